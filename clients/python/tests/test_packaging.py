"""``pip install ./clients/python`` as a user runs it: the package installs
with what it needs, and the source tree is left as it was (no ``build/``, no
``*.egg-info``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from backchannel import __version__

HERE = Path(__file__).resolve().parents[1]

#: What tests and tools leave behind on their own; not the build's doing.
CACHES = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def tree(root: Path) -> set[str]:
    """Every file and directory under ``root``, caches left out."""
    return {
        str(path.relative_to(root))
        for path in root.rglob("*")
        if not CACHES.intersection(path.relative_to(root).parts)
    }


def test_pip_install_leaves_the_source_tree_as_it_was(tmp_path: Path) -> None:
    before = tree(HERE)
    target = tmp_path / "site"
    # Not editable, from the directory, as the README says; the build backend
    # is the one the venv has (no download), the dependencies are not needed.
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "--target",
            str(target),
            str(HERE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    after = tree(HERE)
    assert after == before, f"pip install wrote into the source tree: {sorted(after - before)}"

    package = target / "backchannel"
    for path in (
        "py.typed",
        "sealed.py",
        "django/castellum.py",
        "django/management/commands/backchannel_status.py",
    ):
        assert (package / path).is_file(), path
    assert not (target / "tests").exists() and not (target / "castellum_site").exists()
    metadata = next(target.glob("backchannel_client-*.dist-info")) / "METADATA"
    assert f"Version: {__version__}" in metadata.read_text()
