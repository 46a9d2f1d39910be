"""The xdist groups of tests/conftest.py hold: tests of one group run on one worker (the rehearsal's /opt/ml)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_tests_of_one_group_run_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(textwrap.dedent("""
        import os, pytest

        @pytest.mark.xdist_group("one")
        @pytest.mark.parametrize("i", range(8))
        def test_grouped(i):
            print("WORKER", os.environ["PYTEST_XDIST_WORKER"])
    """))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup", "-rA",
         "-o", "addopts=", str(tmp_path / "test_grouped.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    workers = {line.split()[1] for line in result.stdout.splitlines() if line.startswith("WORKER ")}
    assert len(workers) == 1, f"one group ran on {sorted(workers)}: pytest and pytest-xdist no longer work together"


def test_the_rehearsal_tests_share_one_group():
    sys.path.insert(0, str(ROOT / "tests"))
    import conftest

    class Item:
        fixturenames = ()

        def __init__(self, path: Path) -> None:
            self.fspath = path

    assert conftest.xdist_group(Item(ROOT / "tests" / "rehearsal" / "test_loop.py")) == "opt-ml"
    assert conftest.xdist_group(Item(ROOT / "tests" / "rehearsal" / "test_authorizer.py")) == "opt-ml"
