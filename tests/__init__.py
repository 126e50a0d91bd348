"""stashly's test suite; a package so that ``tests.harness`` is importable from the repository root."""
