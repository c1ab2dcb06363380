"""Every benchmark script with its peer, each in its own process, and one summary table.

    python -m benchmarks [--device cpu|gpu] [--quick] [--only NAME,...] [--out DIR]
                         [--timeout S] [--summarise] [--list]

Each script (``benchmarks/<name>.py``) runs as a subprocess with ``JAX_PLATFORMS`` set from
``--device`` (cpu or cuda), ``--out DIR/<name>.json`` and, with ``--quick``, its ``--smoke``;
a crash, an out-of-memory kill or a timeout ends that benchmark only. Before anything runs, a
probe process with the same environment reports the devices JAX sees, the versions (Python,
jax, jaxlib, NumPy, diffdesign) and the float precision (``jax_enable_x64``; diffdesign turns it
on when imported, so every script runs in float64); ``--device gpu`` stops there when JAX sees
no GPU. Per benchmark the runner records the exit status, wall time, the peak resident memory
of its process tree (``os.wait4``'s ``ru_maxrss``: the largest of the script and the children
it waited for, e.g. a peer in its own environment), the script's own versions (the peer's
among them), and rows of compile / steady-state times of ours and the peer's steady time,
read from the script's JSON. A peer that did not run is written "peer unavailable: <why>".

Writes ``DIR/<name>.json`` (the scripts' own results), ``DIR/summary.json`` and
``DIR/summary.md``; DIR defaults to ``benchmarks/results/<device>`` (``.../<device>/quick``
with ``--quick``, so smoke numbers never overwrite a full run's). ``--summarise`` rebuilds the
summary from the JSON files already in DIR without running anything (the committed full-run
results: their runs predate this runner, so wall time and peak memory are not known).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
PLATFORMS = {"cpu": "cpu", "gpu": "cuda"}  # --device -> JAX_PLATFORMS
TAIL_CHARS = 3000
#: How the probe prints its report (one JSON line after this marker).
_MARK = "BENCHMARK-ENVIRONMENT "
_PROBE = (
    "import importlib.util, json, sys\n"
    f"sys.path.insert(0, {str(HERE)!r})\n"
    "import _timing\n"
    "try:\n"
    "    report = _timing.environment()\n"
    "except Exception as error:\n"
    "    plugins = [n for n in ('jax_cuda12_plugin', 'jax_cuda13_plugin')\n"
    "               if importlib.util.find_spec(n)]\n"
    "    report = {'error': f'jax.devices() raised {type(error).__name__}: {error}'.rstrip(': '),\n"
    "              'cuda_plugins': plugins}\n"
    f"print({_MARK!r} + json.dumps(report))\n"
)


# --------------------------------------------------------------------------- rows from JSON


def _row(work: str, ours: dict | None, peer_s: float | None, note: str = "") -> dict:
    """One table row: our compile and steady-state times (a ``_timing.timed`` dict), the
    peer's steady time, and their ratio (peer / ours)."""
    compile_s = None if ours is None else ours.get("compile_s")
    steady_s = None if ours is None else ours.get("median_s")
    ratio = peer_s / steady_s if peer_s and steady_s else None
    return {
        "work": work,
        "ours_compile_s": compile_s,
        "ours_steady_s": steady_s,
        "peer_steady_s": peer_s,
        "ratio_peer_over_ours": ratio,
        "note": note,
    }


def _beamline_rows(report: dict) -> list[dict]:
    return [
        _row(work, entry["diffdesign"], entry["cheetah"]["median_s"])
        for work, entry in report["results"].items()
    ]


def _calibration_rows(report: dict) -> list[dict]:
    ours = report["ours"]["noise_free"]
    return [
        _row(f"calibrate_offsets vs the published fit, {variant}", ours,
             report["seed_method"][f"manual_{variant}"]["wall_s"],
             "peer: its whole finite-difference fit")
        for variant in ("per_config", "vectorised")
    ]  # fmt: skip


def _tuning_rows(report: dict) -> list[dict]:
    seeds = ", ".join(str(s) for s in report["seeds"])
    return [
        _row(f"tuning study: seeds {seeds} + noise-free, budget {report['budget_per_method']}",
             None, None, "no compile/steady split: see the wall time")
    ]  # fmt: skip


def _bo_rows(report: dict) -> list[dict]:
    """One BO step of the ARES tuning problem, ours against BoTorch's (medians over seeds)."""
    summary, problem = report["summary"], report["problem"]
    ours = {"compile_s": summary["diffdesign"]["cold_first_step_s"]
            - summary["diffdesign"]["median_steady_step_s"],
            "median_s": summary["diffdesign"]["median_steady_step_s"]}  # fmt: skip
    return [_row(f"BO step, ARES tuning, budget {problem['budget']}", ours,
                 summary["botorch"]["median_steady_step_s"],
                 "compile: first seed's first step minus a steady one")]  # fmt: skip


def _muography_rows(report: dict) -> list[dict]:
    rows = []
    for work, ours in report["ours"].items():
        ratio = report.get("ratios", {}).get(work) or {}
        note = "TomOpt extrapolated from 10k" if ratio.get("tomopt_extrapolated") else ""
        if not ratio and report["tomopt"].get("status") == "ok":
            note = f"TomOpt not run at {ours['n_muons']} muons"
        rows.append(_row(work, ours, ratio.get("tomopt_s"), note))
    return rows


RING_PEERS = ("pyat", "pyat_finite_difference", "pyat_analytic")


def _ring_rows(report: dict) -> list[dict]:
    rows = []
    for ring, sections in report["results"].items():
        for section, entry in sections.items():
            if not isinstance(entry, dict) or "diffdesign" not in entry:
                continue
            for peer in (p for p in RING_PEERS if p in entry):
                note = "pyAT extrapolated" if entry[peer].get("extrapolated") else ""
                rows.append(_row(f"{ring} {section} vs {peer}", entry["diffdesign"],
                                 entry[peer]["median_s"], note))  # fmt: skip
    return rows


def _xpcs_rows(report: dict) -> list[dict]:
    rows = []
    for name, entry in report["datasets"].items():
        peer = (entry.get("homodyne") or {}).get("nlsq") or {}
        peer_s = peer.get("steady_s") if peer.get("status") == "ok" else None
        for solver, fit in entry["diffdesign"]["nlsq"].items():
            size = f"{entry['mode']}, {entry['n_phi']} angle(s), {entry['n_t']}^2"
            work = f"{name} ({size}) NLSQ {solver}"
            if fit.get("status") != "ok":
                rows.append(_row(work, None, peer_s, f"ours: {fit.get('status')}"))
                continue
            timing = fit["timing"]  # steady_s is its median_s
            rows.append(_row(work, timing, peer_s))
    return rows


def _scaling_rows(report: dict) -> list[dict]:
    """Per curve its largest size measured (no peer: growth of our own cost)."""
    rows = []
    for name, curve in report.get("curves", {}).items():
        done = [point for point in curve.get("points", []) if point.get("status") == "ok"]
        exponent = (curve.get("fit") or {}).get("exponent")
        note = "" if exponent is None else f"time ~ size^{exponent:.2f}"
        if not done:
            rows.append(_row(name, None, None, "no size measured"))
            continue
        size = f"{done[-1]['size']:,} {curve.get('size_unit', '')}".rstrip()
        rows.append(_row(f"{name} at {size}", done[-1], None, note))
    return rows


def _sweep_rows(report: dict) -> list[dict]:
    """The batched sweep against the same points one by one (CLI extrapolated from the
    points timed; in process all points)."""
    batched = report["batched"]
    ours = {"compile_s": batched["first_run_s"] - batched["steady_run_s"],
            "median_s": batched["steady_run_s"]}  # fmt: skip
    cli, alone = report["one_by_one_cli"], report["one_by_one_in_process"]
    n = f"{report['points']:,} ARES calibrations batched"
    return [
        _row(f"{n} vs one by one via the CLI", ours, cli["all_points_extrapolated_s"],
             f"CLI: {cli['points_timed']} points timed, extrapolated"),
        _row(f"{n} vs one by one in process", ours, alone["wall_s"], ""),
    ]  # fmt: skip


def _peer_in_versions(label: str, key: str) -> Callable[[dict], dict]:
    """A peer that the script imports itself (it cannot run without it)."""
    return lambda report: {"name": label, "version": report["versions"].get(key), "status": "ok"}


def _muography_peer(report: dict) -> dict:
    status = report["tomopt"].get("status", "no status")
    return {
        "name": "TomOpt",
        "version": report["versions"].get("tomopt"),
        "status": "ok" if status == "ok" else f"peer unavailable: {status}",
    }


def _xpcs_peer(report: dict) -> dict:
    statuses = [(e.get("homodyne") or {}).get("status", "") for e in report["datasets"].values()]
    version = (report["versions"].get("homodyne") or {}).get("homodyne_version")
    ran = [s for s in statuses if s == "done"]
    status = "ok" if ran else f"peer unavailable: {statuses[0] if statuses else 'not run'}"
    return {"name": "homodyne", "version": version, "status": status}


def _no_peer(why: str) -> Callable[[dict], dict]:
    return lambda report: {"name": None, "version": None, "status": f"no peer: {why}"}


@dataclass(frozen=True)
class Benchmark:
    name: str
    timeout_s: float  # a full run
    quick_timeout_s: float  # --quick (the script's --smoke); its smoke takes ~1/4 of this
    rows: Callable[[dict], list[dict]]
    peer: Callable[[dict], dict]
    script: Path | None = None  # default: benchmarks/<name>.py

    @property
    def path(self) -> Path:
        return self.script or HERE / f"{self.name}.py"


BENCHMARKS = (
    Benchmark("ares_calibration", 1800, 180, _calibration_rows,
              _peer_in_versions("Cheetah", "cheetah")),
    Benchmark("ares_tuning", 1800, 300, _tuning_rows,
              _no_peer("tuning methods compared within diffdesign")),
    Benchmark("bo_vs_botorch", 1800, 240, _bo_rows, _peer_in_versions("BoTorch", "botorch")),
    Benchmark("beamline_vs_cheetah", 900, 180, _beamline_rows,
              _peer_in_versions("Cheetah", "cheetah")),
    Benchmark("muography_vs_tomopt", 5400, 180, _muography_rows, _muography_peer),
    Benchmark("ring_vs_pyat", 3600, 240, _ring_rows,
              _peer_in_versions("pyAT", "accelerator-toolbox")),
    Benchmark("xpcs_vs_homodyne", 10800, 300, _xpcs_rows, _xpcs_peer),
    Benchmark("sweep_ares", 3600, 240, _sweep_rows,
              _no_peer("the same study one point at a time")),
    Benchmark("scaling", 7200, 600, _scaling_rows,
              _no_peer("cost-growth curves of diffdesign alone")),
)  # fmt: skip


def available(benchmarks=BENCHMARKS) -> list[Benchmark]:
    """The benchmarks whose script exists in this checkout."""
    return [b for b in benchmarks if b.path.exists()]


# --------------------------------------------------------------------------- running


def child_env(device: str) -> dict[str, str]:
    """The environment of every child: this one, JAX restricted to the requested platform,
    unbuffered output (the logs are complete up to a kill)."""
    return os.environ | {"JAX_PLATFORMS": PLATFORMS[device], "PYTHONUNBUFFERED": "1"}


def _relative(text: str) -> str:
    """Paths inside the repository written relative to it (results are committed)."""
    return text.replace(str(ROOT) + os.sep, "").replace(str(ROOT), ".")


def _tail(path: Path) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return _relative(text[-TAIL_CHARS:])


def probe(device: str) -> dict:
    """Devices, versions and precision as every benchmark will see them; ``SystemExit`` with
    the reason when JAX cannot run on ``device``."""
    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=ROOT, env=child_env(device),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith(_MARK)]
    if not lines:
        reason = f"the probe failed (exit {done.returncode}): {_relative(done.stderr[-1000:])}"
    else:
        report = json.loads(lines[-1][len(_MARK) :])
        if "error" not in report and report["jax_backend"] == PLATFORMS[device].replace(
            "cuda", "gpu"
        ):
            return report
        reason = report.get("error") or f"JAX's backend is {report['jax_backend']}"
        if device == "gpu" and "cuda_plugins" in report:
            plugins = ", ".join(report["cuda_plugins"]) or "none installed"
            reason += f" (CUDA plugins for jax: {plugins}; install jax[cuda12] for this jax)"
    who = "no GPU visible to JAX" if device == "gpu" else "JAX cannot run on the CPU"
    raise SystemExit(f"{who}: JAX_PLATFORMS={PLATFORMS[device]}: {reason}")


def _wait(proc: subprocess.Popen, timeout_s: float) -> tuple[int, object, bool]:
    """Wait for ``proc`` (its own session) up to ``timeout_s``; kill its whole process group
    on timeout, and any process it left behind. Returns (exit code, rusage, timed out)."""
    deadline = time.monotonic() + timeout_s
    timed_out = False
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.1)
    finally:  # also on Ctrl-C; and children it started and did not wait for (its group)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage, timed_out


def run_one(bench: Benchmark, out: Path, quick: bool, device: str, timeout_s: float) -> dict:
    """Run one script; its record (status, wall time, peak memory, rows, ...)."""
    out_json = out / f"{bench.name}.json"
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stdout, stderr = logs / f"{bench.name}.stdout.txt", logs / f"{bench.name}.stderr.txt"
    command = [sys.executable, str(bench.path), "--out", str(out_json)]
    command += ["--smoke"] if quick else []
    # A child's ru_maxrss starts at this process's high-water mark (Linux carries it over
    # exec): keep the runner small, and record the floor below which peaks are not seen.
    floor_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start_wall = time.time()
    start = time.perf_counter()
    with stdout.open("w") as out_file, stderr.open("w") as err_file:
        proc = subprocess.Popen(command, cwd=ROOT, env=child_env(device), stdout=out_file,
                                stderr=err_file, start_new_session=True)  # fmt: skip
        code, usage, timed_out = _wait(proc, timeout_s)
    record = {
        "command": _relative(" ".join(["python", *command[1:]])),
        "exit_code": code,
        "wall_s": time.perf_counter() - start,
        "timeout_s": timeout_s,
        "peak_rss_mib": usage.ru_maxrss / 1024,  # Linux: KiB
        "peak_rss_floor_mib": floor_mib,
        "results_json": out_json.name,
    }
    fresh = out_json.exists() and out_json.stat().st_mtime >= start_wall - 1
    if timed_out:
        record["status"] = f"timeout after {timeout_s:g} s"
    elif code != 0:
        record["status"] = f"failed: exit {code}"
    elif not fresh:
        record["status"] = f"failed: exit 0 but no {out_json.name} written"
    else:
        record["status"] = "ok"
    if record["status"] != "ok":
        record["stderr_tail"] = _tail(stderr)
        record["stdout_tail"] = _tail(stdout)[-1000:]
    return record | (describe(bench, out_json) if fresh else {"rows": []})


def describe(bench: Benchmark, out_json: Path) -> dict:
    """What the summary keeps of a script's JSON: device, versions, peer, rows."""
    try:
        report = json.loads(out_json.read_text())
        machine = report.get("machine", {})
        devices = machine.get("jax_devices")
        return {
            "smoke": report.get("smoke"),
            "date": report.get("date") or report.get("time"),
            "device": machine.get("jax_backend") or machine.get("backend"),
            "jax_devices": devices,
            "versions": report.get("versions") or machine.get("versions") or {},
            "peer": {
                key: _relative(value) if isinstance(value, str) else value
                for key, value in bench.peer(report).items()
            },
            "rows": bench.rows(report),
        }
    except Exception as error:  # a script's format changed: keep the run, say why
        return {"rows": [], "summary_error": f"{type(error).__name__}: {error}"}


# --------------------------------------------------------------------------- summary


def _number(value: float | None) -> str:
    """Three significant figures; thousands written out (``32,835``)."""
    if value is None:
        return "–"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


COLUMNS = ("benchmark", "work", "ours compile s", "ours steady s", "peer steady s",
           "ratio peer/ours", "device", "peak MiB", "wall s")  # fmt: skip


def table(summary: dict) -> list[list[str]]:
    """The summary's rows as table cells (``COLUMNS``)."""
    rows = []
    for name, record in summary["benchmarks"].items():
        peer = record.get("peer") or {}
        unavailable = peer.get("status", "") if peer.get("status", "ok") != "ok" else ""
        device = record.get("device") or summary.get("environment", {}).get("jax_backend")
        common = [_number(record.get("peak_rss_mib")), _number(record.get("wall_s"))]
        if record["status"] != "ok" or not record["rows"]:
            why = record.get("summary_error") or record["status"]
            last = (record.get("stderr_tail") or "").strip().splitlines()[-1:]
            work = f"**{why}**" + (f": {last[0][:160]}" if last else "")
            rows.append([name, work, "–", "–", "–", "–", device or "–", *common])
            continue
        for row in record["rows"]:
            peer_cell = _number(row["peer_steady_s"]) if row["peer_steady_s"] else unavailable
            work = row["work"] + (f" ({row['note']})" if row["note"] else "")
            rows.append([name, work, _number(row["ours_compile_s"]), _number(row["ours_steady_s"]),
                         peer_cell or "–", _number(row["ratio_peer_over_ours"]), device or "–",
                         *common])  # fmt: skip
    return rows


def _peer_text(peer: dict) -> str:
    name = " ".join(str(v) for v in (peer["name"], peer["version"]) if v)
    status = "" if peer["status"] == "ok" else f"({peer['status']})"
    return " ".join(part for part in (name, status) if part)


def markdown(summary: dict) -> str:
    env = summary.get("environment") or {}
    if "jax" in env:
        head = (
            f"Device: {', '.join(env['devices'])} (JAX_PLATFORMS={summary['jax_platforms']}); "
            f"Python {env['python']}, jax {env['jax']}, jaxlib {env['jaxlib']}, NumPy "
            f"{env['numpy']}, diffdesign {env['diffdesign']}; {env['precision']} "
            f"(jax_enable_x64={env['jax_enable_x64']}); "
            f"{'quick (--smoke)' if summary['quick'] else 'full'} runs, {summary['date']}."
        )
    else:
        head = env.get("note", "")
    peers = "; ".join(
        f"{name}: {_peer_text(record['peer'])}"
        for name, record in summary["benchmarks"].items()
        if record.get("peer")
    )
    lines = [
        f"# Benchmarks ({summary['device']})",
        "",
        head,
        "",
        f"Peers: {peers}.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "| " + " | ".join("---" for _ in COLUMNS) + " |",
    ]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in table(summary)]
    return "\n".join(lines) + "\n"


def write_summary(summary: dict, out: Path) -> None:
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(markdown(summary))


def run_suite(benchmarks: list[Benchmark], device: str, quick: bool, out: Path,
              timeout_s: float | None = None, say=print) -> dict:  # fmt: skip
    """Probe the device (stop if absent), run each benchmark, write and return the summary."""
    environment = probe(device)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "device": device,
        "jax_platforms": PLATFORMS[device],
        "quick": quick,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "environment": environment,
        "peak_memory": "os.wait4 ru_maxrss of each script: the largest resident set of the "
        "script and of the children it waited for (peers in their own environment); not "
        "below peak_rss_floor_mib, the runner's own high-water mark, which Linux passes on",
        "benchmarks": {},
    }
    start = time.perf_counter()
    for bench in benchmarks:
        limit = timeout_s or (bench.quick_timeout_s if quick else bench.timeout_s)
        say(f"[{bench.name}] running (limit {limit:g} s) ...")
        record = run_one(bench, out, quick, device, limit)
        summary["benchmarks"][bench.name] = record
        say(f"[{bench.name}] {record['status']} in {record['wall_s']:.1f} s, "
            f"peak {record['peak_rss_mib']:.0f} MiB")  # fmt: skip
        summary["wall_s"] = time.perf_counter() - start
        write_summary(summary, out)  # after every benchmark: a killed suite keeps the rest
    return summary


def summarise(benchmarks: list[Benchmark], device: str, out: Path) -> dict:
    """The summary of the JSON files already in ``out`` (nothing runs)."""
    summary = {
        "device": device,
        "jax_platforms": PLATFORMS[device],
        "quick": None,
        "date": None,
        "environment": {
            "note": "Summarised from the scripts' JSON files (`python -m benchmarks --summarise`), "
            "not rerun: wall time and peak memory of those runs were not recorded."
        },
        "benchmarks": {},
    }
    for bench in benchmarks:
        out_json = out / f"{bench.name}.json"
        if not out_json.exists():
            record = {"status": f"not run: no {out_json.name}", "rows": []}
        else:
            record = {"status": "ok", "results_json": out_json.name} | describe(bench, out_json)
        summary["benchmarks"][bench.name] = record
    write_summary(summary, out)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--device", choices=sorted(PLATFORMS), default="cpu")
    parser.add_argument("--quick", action="store_true", help="each script's --smoke")
    parser.add_argument("--only", default=None, help="comma-separated benchmark names")
    parser.add_argument("--out", type=Path, default=None,
                        help="default benchmarks/results/<device>[/quick]")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=None, help="per benchmark (s)")
    parser.add_argument(
        "--summarise", action="store_true",
        help="rebuild summary.json/.md from the JSON files in --out; run nothing",
    )  # fmt: skip
    parser.add_argument("--list", action="store_true", help="print the benchmark names")
    args = parser.parse_args(argv)
    present = available()
    if args.list:
        print("\n".join(b.name for b in present))
        return 0
    chosen = present
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        known = {b.name: b for b in present}
        unknown = [n for n in names if n not in known]
        if unknown:
            parser.error(f"--only: unknown {unknown}; choose from {sorted(known)}")
        chosen = [known[n] for n in names]
    out = args.out or HERE / "results" / args.device / ("quick" if args.quick else "")
    if args.summarise:
        summary = summarise(chosen, args.device, out)
    else:
        # a `timeout` around the suite sends SIGTERM: end the running benchmark's processes too
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        summary = run_suite(chosen, args.device, args.quick, out, args.timeout)
    print(markdown(summary))
    print(f"wrote {_relative(str(out / 'summary.json'))} and summary.md")
    return 0 if all(r["status"] == "ok" for r in summary["benchmarks"].values()) else 1
