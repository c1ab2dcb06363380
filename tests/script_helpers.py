"""Running the benchmark scripts as a user would (a subprocess from the repository root)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_smoke(script: str, out: Path) -> dict:
    """Run ``benchmarks/<script> --smoke --out <out>`` and return the JSON it wrote."""
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--out", str(out)],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    return json.loads(out.read_text())
