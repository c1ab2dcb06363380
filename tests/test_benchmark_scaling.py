"""benchmarks/scaling.py --smoke: the results JSON, its fitted exponents and the plot."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.smoke  # end to end: `pytest -m smoke` (CI runs it after the unit tests)

ROOT = Path(__file__).resolve().parents[1]


def test_scaling_smoke(tmp_path):
    out = tmp_path / "scaling.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scaling.py"), "--smoke", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["smoke"] is True
    assert (tmp_path / report["plot"]).stat().st_size > 0
    families = {curve["family"] for curve in report["curves"].values()}
    assert families == {"ares", "particles", "ring", "xpcs", "muons"}
    threshold = report["fit_threshold_s"]
    for name, curve in report["curves"].items():
        points = curve["points"]
        assert len(points) == 2, name
        sizes = np.array([p["size"] for p in points], float)
        times = np.array([p["min_s"] for p in points])
        assert np.all(np.diff(sizes) > 0), name
        for p in points:
            assert p["status"] == "ok"
            assert 0 < p["min_s"] <= p["median_s"] <= p["first_call_s"] + 1e-9
            assert p["compile_s"] >= 0 and p["peak_rss_mib"] > 0 and p["load_1min"] >= 0
        # the exponent, recomputed: log-log least squares over the points above the
        # threshold, or the two largest when fewer than two are
        above = times > threshold
        if above.sum() < 2:
            above = np.argsort(sizes) >= sizes.size - 2
        slope = np.polyfit(np.log(sizes[above]), np.log(times[above]), 1)[0]
        fit = curve["fit"]
        assert fit["fallback"] == bool((times > threshold).sum() < 2)
        assert fit["sizes_used"] == sizes[above].astype(int).tolist()
        np.testing.assert_allclose(fit["exponent"], slope, rtol=1e-9)
        assert curve["super_linear"] == (slope > report["super_linear_above"])
        assert (curve["reason"] is not None) == curve["super_linear"]
