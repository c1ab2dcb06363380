"""The fuzz suite's session summary: counts per outcome, printed and written to JSON.

Each process (the pytest process, or every xdist worker) writes the outcomes of the cases it
ran to ``fuzz_outcomes_<worker>.json``; the main process adds them up at the end into
``fuzz_summary.json`` in pytest's base temporary folder and prints the counts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.fuzz import _harness


def _summary_folder(config) -> Path | None:
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is None:
        return None
    base = factory.getbasetemp()
    # an xdist worker's base folder lies inside the main process's one
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def pytest_sessionfinish(session, exitstatus):
    if not _harness.RECORDED:
        return
    folder = _summary_folder(session.config)
    if folder is None:
        return
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    (folder / f"fuzz_outcomes_{worker}.json").write_text(json.dumps(_harness.RECORDED))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    folder = _summary_folder(config)
    if folder is None or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    records = []
    for path in sorted(folder.glob("fuzz_outcomes_*.json")):
        records.extend(json.loads(path.read_text()))
    if not records:
        return
    result = _harness.summary(records)
    path = folder / "fuzz_summary.json"
    path.write_text(json.dumps(result, indent=1))
    counts = ", ".join(f"{k} {v}" for k, v in result["counts"].items())
    terminalreporter.write_sep("-", f"fuzz cases: {result['total']} ({counts})")
    for failure in result["failures"]:
        terminalreporter.write_line(
            f"{failure['outcome']}: {failure['case']}: {failure['detail'][:200]}"
        )
    terminalreporter.write_line(f"fuzz summary written to {path}")
