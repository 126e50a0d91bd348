"""The sdist ships the package, its metadata and its licence, and nothing half-shipped (no tests without
the support modules they import)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> tarfile.TarFile:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("src", "tests", "examples"):  # what a checkout has: the MANIFEST must keep tests out
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (archive,) = out.glob("stashly-*.tar.gz")
    return tarfile.open(archive)


def shipped(archive: tarfile.TarFile) -> set[str]:
    return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def test_the_sdist_ships_every_module_and_the_licence(sdist: tarfile.TarFile) -> None:
    files = shipped(sdist)
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "src" / "stashly").rglob("*.py")}
    assert modules <= files, sorted(modules - files)
    assert {"LICENSE", "README.md", "pyproject.toml", "src/stashly/py.typed"} <= files


def test_the_sdist_ships_no_tests(sdist: tarfile.TarFile) -> None:
    assert not [name for name in shipped(sdist) if name.startswith(("tests/", "examples/"))]


def test_the_metadata_names_the_licence_file_it_ships(sdist: tarfile.TarFile) -> None:
    (info,) = [m for m in sdist.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO")]
    handle = sdist.extractfile(info)
    assert handle is not None
    metadata = handle.read().decode()
    assert "License-Expression: MIT" in metadata
    assert "License-File: LICENSE" in metadata
