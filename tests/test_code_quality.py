"""The code stays typed and clean: the check API type-checks in strict mode, everything with the
project's mypy settings, and ruff finds nothing. (The tools come with the tox environments.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.skipif(shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
                    reason="ruff is not installed in this environment")
def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    done = _run(ruff, "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("args", [("--strict", "conformance/checks"), ("conformance", "reference_executors")],
                         ids=["checks-strict", "project"])
def test_mypy_is_clean(args: tuple[str, ...]) -> None:
    pytest.importorskip("mypy")
    with tempfile.TemporaryDirectory() as cache:
        done = _run(sys.executable, "-m", "mypy", "--cache-dir", cache, *args)
    assert done.returncode == 0, done.stdout + done.stderr
