"""``python -m stashly``: the command line of :mod:`stashly.cli`."""

from stashly.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
