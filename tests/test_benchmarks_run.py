"""The benchmark scripts at least start: each answers --help (imports and argument parsing),
so a helper renamed in the tests they share cannot silently break them."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_each_benchmark_script_starts_and_answers_help(script):
    done = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
    assert done.stdout.startswith(f"usage: {script.name} [-h]"), done.stdout[:300]   # its own parser answered
    assert "-h, --help" in done.stdout and "Traceback" not in done.stderr
