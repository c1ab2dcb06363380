"""``python -m benchmarks``: the suite runner records what each script measured, refuses a
missing GPU before running anything, and keeps going past a benchmark that fails."""

import json
import platform
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import jax
import numpy as np
import pytest

from benchmarks import _runner

from .script_helpers import ROOT

CPU = jax.default_backend() == "cpu"


def _cells(markdown: str) -> dict[tuple[str, str], list[str]]:
    """The summary table's rows by (benchmark, work), cells as written."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith(("| benchmark", "| ---")):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            assert len(cells) == len(_runner.COLUMNS), line
            rows[cells[0], cells[1]] = cells
    return rows


def _written(cell: str, value: float) -> None:
    """A table cell shows ``value`` to its three significant figures."""
    assert float(cell.replace(",", "")) == pytest.approx(value, rel=5.1e-3), (cell, value)


@pytest.mark.smoke
@pytest.mark.skipif(not CPU, reason="checks the CPU run")
def test_quick_run_summary_is_the_scripts_numbers(tmp_path):
    """The two cheapest smokes (~15 s each): Cheetah's side by side, TomOpt's venv absent."""
    out = tmp_path / "cpu"
    names = ["beamline_vs_cheetah", "muography_vs_tomopt"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--only", ",".join(names), "--out", out],
        cwd=ROOT, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    markdown = (out / "summary.md").read_text()
    assert markdown in done.stdout

    env = summary["environment"]
    assert (summary["device"], summary["jax_platforms"], summary["quick"]) == ("cpu", "cpu", True)
    assert env["python"] == platform.python_version()
    assert (env["jax"], env["numpy"]) == (jax.__version__, np.__version__)
    assert env["jaxlib"] == metadata.version("jaxlib")
    assert env["devices"] == ["cpu:0 cpu"] and env["jax_backend"] == "cpu"
    assert env["jax_enable_x64"] is True and env["precision"] == "float64"
    assert "float64 (jax_enable_x64=True)" in markdown and "quick (--smoke)" in markdown
    assert list(summary["benchmarks"]) == names
    table = _cells(markdown)

    smoke_flag = {"beamline_vs_cheetah": None, "muography_vs_tomopt": True}  # as the JSON has it
    for name, record in summary["benchmarks"].items():
        assert (record["status"], record["exit_code"], record["smoke"]) == (
            "ok",
            0,
            smoke_flag[name],
        )
        assert record["command"] == f"python benchmarks/{name}.py --out {out / name}.json --smoke"
        assert record["device"] == "cpu" and record["timeout_s"] == 180
        # JAX, and Cheetah's PyTorch, alone take a few hundred MiB; the smokes stay below 2 GiB
        assert 200 < record["peak_rss_mib"] < 2048
        assert 0 < record["wall_s"] <= summary["wall_s"]
        for row in record["rows"]:
            cells = table[name, row["work"] + (f" ({row['note']})" if row["note"] else "")]
            _written(cells[2], row["ours_compile_s"])
            _written(cells[3], row["ours_steady_s"])
            assert cells[6] == "cpu"
            _written(cells[7], record["peak_rss_mib"])
            _written(cells[8], record["wall_s"])

    cheetah = summary["benchmarks"]["beamline_vs_cheetah"]
    report = json.loads((out / "beamline_vs_cheetah.json").read_text())
    assert cheetah["versions"] == report["versions"]
    assert cheetah["peer"] == {
        "name": "Cheetah",
        "version": metadata.version("cheetah-accelerator"),
        "status": "ok",
    }
    smoke_work = ["a_one_track", "b_batch_10", "b_batch_100",
                  "c_gradient_15_settings_6_offsets", "d_particles_1000"]  # fmt: skip
    assert [row["work"] for row in cheetah["rows"]] == smoke_work == list(report["results"])
    for row in cheetah["rows"]:
        entry = report["results"][row["work"]]
        assert row["ours_compile_s"] == entry["diffdesign"]["compile_s"]
        assert row["ours_steady_s"] == entry["diffdesign"]["median_s"]
        assert row["peer_steady_s"] == entry["cheetah"]["median_s"]
        assert row["ratio_peer_over_ours"] == pytest.approx(entry["speedup"], rel=1e-12)
        cells = table["beamline_vs_cheetah", row["work"]]
        _written(cells[4], entry["cheetah"]["median_s"])
        _written(cells[5], entry["speedup"])

    tomopt = summary["benchmarks"]["muography_vs_tomopt"]
    report = json.loads((out / "muography_vs_tomopt.json").read_text())
    ours = report["ours"]["poca/500"]
    assert [row["work"] for row in tomopt["rows"]] == ["poca/500"]
    row = tomopt["rows"][0]
    assert (row["ours_compile_s"], row["ours_steady_s"]) == (ours["compile_s"], ours["median_s"])
    assert row["peer_steady_s"] is None and row["ratio_peer_over_ours"] is None
    # the peer's venv is not there: said so, with the script's reason, repository-relative
    status = tomopt["peer"]["status"]
    assert status == f"peer unavailable: {report['tomopt']['status']}".replace(f"{ROOT}/", "")
    assert status.startswith("peer unavailable: skipped: .venv-tomopt/bin/python not found")
    cells = table["muography_vs_tomopt", "poca/500"]
    assert (cells[4], cells[5]) == (status, "–")


@pytest.mark.skipif(not CPU, reason="this machine has a GPU")
def test_gpu_refused_before_anything_runs(tmp_path):
    out = tmp_path / "gpu"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--device", "gpu", "--out", out],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("no GPU visible to JAX: JAX_PLATFORMS=cuda: jax.devices() raised")
    assert "install jax[cuda12]" in done.stderr
    assert not out.exists()  # no benchmark started, no summary written


def test_device_and_output_choices():
    assert _runner.child_env("gpu")["JAX_PLATFORMS"] == "cuda"
    assert _runner.child_env("cpu")["JAX_PLATFORMS"] == "cpu"
    names = [b.name for b in _runner.available()]
    suite = ["ares_calibration", "ares_tuning", "bo_vs_botorch", "beamline_vs_cheetah",
             "muography_vs_tomopt",
             "ring_vs_pyat", "xpcs_vs_homodyne", "sweep_ares", "scaling"]  # fmt: skip
    assert names == suite
    assert all((ROOT / "benchmarks" / f"{name}.py").exists() for name in suite)


FAKE_ENV = {
    "python": "3.x", "platform": "test", "cpu_count": 2, "diffdesign": "0", "jax": "0",
    "jaxlib": "0", "numpy": "0", "jax_backend": "cpu", "devices": ["cpu:0 cpu"],
    "jax_enable_x64": True, "precision": "float64",
}  # fmt: skip


def _script(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


def test_failure_and_timeout_recorded_and_the_suite_goes_on(tmp_path):
    grandchild = tmp_path / "grandchild.pid"
    broken = _script(tmp_path / "broken.py", """
        import sys
        print("starting", flush=True)
        sys.exit("boom: the fake benchmark failed")
    """)  # fmt: skip
    hanging = _script(tmp_path / "hanging.py", f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(grandchild)!r}, "w").write(str(child.pid))
        time.sleep(120)
    """)  # fmt: skip
    good = _script(tmp_path / "good.py", """
        import argparse, json
        parser = argparse.ArgumentParser()
        parser.add_argument("--out")
        parser.add_argument("--smoke", action="store_true")
        args = parser.parse_args()
        block = b"x" * (300 * 2**20)  # written, so resident
        timing = {"compile_s": 1.5, "median_s": 0.25}
        report = {"smoke": args.smoke, "machine": {"jax_backend": "cpu"},
                  "versions": {"peer": "9.9"}, "ours": timing, "peer_s": 2.0}
        open(args.out, "w").write(json.dumps(report))
    """)  # fmt: skip

    # The suite runs in a process of its own, as from the command line: a child's peak memory
    # cannot read below its parent's (Linux passes the high-water mark on at exec), and this
    # pytest process may have grown past the 300 MiB measured below.
    driver = _script(tmp_path / "driver.py", f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from benchmarks import _runner

        def rows(report):
            return [_runner._row("fake work", report["ours"], report["peer_s"])]

        def peer(report):
            return {{"name": "Peer", "version": report["versions"]["peer"], "status": "ok"}}

        _runner.probe = lambda device: {FAKE_ENV!r}  # the real one: the tests above
        benches = [
            _runner.Benchmark("broken", 60, 60, rows, peer, script=Path({str(broken)!r})),
            _runner.Benchmark("hanging", 60, 2, rows, peer, script=Path({str(hanging)!r})),
            _runner.Benchmark("good", 60, 60, rows, peer, script=Path({str(good)!r})),
        ]
        _runner.run_suite(benches, "cpu", True, Path(sys.argv[1]), say=print)
    """)  # fmt: skip
    out = tmp_path / "out"
    # through a small intermediate process: the driver's high-water mark then starts from the
    # intermediate's fresh memory, not from this pytest worker's (GiB after earlier tests)
    relay = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", relay, sys.executable, driver, out], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    records = summary["benchmarks"]
    assert list(records) == ["broken", "hanging", "good"]

    failed = records["broken"]
    assert (failed["status"], failed["exit_code"], failed["rows"]) == ("failed: exit 1", 1, [])
    assert failed["stderr_tail"] == "boom: the fake benchmark failed\n"
    assert failed["stdout_tail"] == "starting\n"

    hung = records["hanging"]
    assert (hung["status"], hung["exit_code"], hung["timeout_s"]) == ("timeout after 2 s", -9, 2)
    assert 2 <= hung["wall_s"] < 10
    pid = int(grandchild.read_text())
    stat = Path(f"/proc/{pid}/stat")  # the child it started went with it (gone or a zombie)
    assert not stat.exists() or stat.read_text().split(") ")[1].startswith("Z")

    ok = records["good"]
    assert (ok["status"], ok["exit_code"], ok["smoke"], ok["device"]) == ("ok", 0, True, "cpu")
    assert ok["peer"] == {"name": "Peer", "version": "9.9", "status": "ok"}
    assert ok["rows"] == [
        {"work": "fake work", "ours_compile_s": 1.5, "ours_steady_s": 0.25,
         "peer_steady_s": 2.0, "ratio_peer_over_ours": 8.0, "note": ""}
    ]  # fmt: skip
    # the floor: the driver's high-water mark, itself carried over from this pytest process;
    # under the good script's block, so that its peak is its own
    assert ok["peak_rss_floor_mib"] < 300
    assert 300 <= ok["peak_rss_mib"] < 400  # the 300 MiB block and an interpreter

    table = _cells((out / "summary.md").read_text())
    assert table["broken", "**failed: exit 1**: boom: the fake benchmark failed"][2:6] == ["–"] * 4
    assert table["hanging", "**timeout after 2 s**"][2:6] == ["–"] * 4
    assert table["good", "fake work"][2:6] == ["1.5", "0.25", "2", "8"]


def test_committed_summary_matches_the_committed_results(tmp_path):
    """``benchmarks/results/cpu/summary.*`` is ``--summarise`` of the JSON files beside it,
    and README quotes its table."""
    results = ROOT / "benchmarks" / "results" / "cpu"
    committed = json.loads((results / "summary.json").read_text())
    chosen = [b for b in _runner.BENCHMARKS if b.name in committed["benchmarks"]]
    assert len(chosen) >= 6
    for bench in chosen:
        (tmp_path / f"{bench.name}.json").write_bytes((results / f"{bench.name}.json").read_bytes())
    fresh = _runner.summarise(chosen, "cpu", tmp_path)
    assert json.loads(json.dumps(fresh)) == committed
    markdown = (results / "summary.md").read_text()
    assert (tmp_path / "summary.md").read_text() == markdown
    readme = (ROOT / "README.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("|")]
    assert "\n".join(table) in readme
    # one figure traced by hand: ESRF optics, pyAT 46.9 ms / ours 2.39 ms
    ring = json.loads((results / "ring_vs_pyat.json").read_text())["results"]["esrf"]
    optics = ring["a_linear_optics"]
    cells = _cells(markdown)["ring_vs_pyat", "esrf a_linear_optics vs pyat"]
    assert cells[3:6] == ["0.00239", "0.0469", "19.6"]
    assert optics["ratio"] == pytest.approx(optics["pyat"]["median_s"] / float(cells[3]), 2e-3)
