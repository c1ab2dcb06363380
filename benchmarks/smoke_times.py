"""How long every study's ``--smoke`` takes a new user, and how long it stays silent.

    python benchmarks/smoke_times.py [--out benchmarks/results/cpu/smoke_times.json]
        [--only ares/study,ring/correct] [--warm] [--timeout-s 900] [--smoke]

Every command the ``diffdesign`` CLI discovers (``experiments/<domain>/<verb>.py``) runs once
with ``--smoke --out <fresh folder>`` in its own process, with an empty persistent
compilation cache (``DIFFDESIGN_JAX_CACHE`` pointed at a fresh folder): the first run of a
new user, compilation included. ``--warm`` runs each a second time into another fresh
folder with the cache the first run filled (what JAX's persistent cache saves on a rerun).
Per run: the wall time, the time to the first line of output, the longest stretch without
output (start, every line of stdout or stderr, and the end count as marks), the exit status
and the last lines. The target of issue 26 is 60 s wall on 2 cores for every smoke run.
``--smoke`` (this script's own, for CI): only ``ares/track``, the cheapest command.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks/results/cpu/smoke_times.json"
#: Extra arguments a command needs to run without user data ({offsets}: a file of zero
#: quadrupole offsets this script writes, standing in for a calibration's offsets.json).
EXTRA = {"xpcs/fit": ["--example", "--method", "both"], "ares/tune": ["--offsets", "{offsets}"]}
TARGET_S = 60.0
TAIL_LINES = 8


def commands() -> list[str]:
    """``domain/verb`` of every command, as the CLI discovers them."""
    from diffdesign.cli import discover

    return [f"{d}/{v}" for d, verbs in discover().items() for v in verbs]


def run_once(command: str, out: Path, cache: Path, timeout: float) -> dict:
    """Run ``diffdesign <domain> <verb> --smoke --out OUT`` and time its output lines."""
    domain, verb = command.split("/")
    offsets = cache.parent / "offsets.json"
    if "{offsets}" in EXTRA.get(command, []):  # only the commands that read one
        offsets.parent.mkdir(parents=True, exist_ok=True)
        offsets.write_text(json.dumps({"offsets_m": [[0.0, 0.0]] * 3}))
    extra = [a.format(offsets=offsets) for a in EXTRA.get(command, [])]
    argv = [sys.executable, "-m", "diffdesign.cli", domain, verb, *extra, "--smoke", "--out",
            str(out)]  # fmt: skip
    env = {**os.environ, "DIFFDESIGN_JAX_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)  # fmt: skip
    marks, lines = [0.0], []
    selector = selectors.DefaultSelector()
    for stream in (proc.stdout, proc.stderr):
        selector.register(stream, selectors.EVENT_READ)
    open_streams, timed_out = 2, False
    while open_streams:
        left = timeout - (time.perf_counter() - start)
        if left <= 0:
            proc.kill()
            timed_out = True
            break
        for event, _ in selector.select(timeout=min(left, 1.0)):
            line = event.fileobj.readline()
            if not line:
                selector.unregister(event.fileobj)
                open_streams -= 1
                continue
            now = time.perf_counter() - start
            # a progress bar redraws with \r: every redraw is output the user sees
            marks.append(now)
            lines.append(line.rstrip("\n").split("\r")[-1])
    rc = proc.wait()
    wall = time.perf_counter() - start
    marks.append(wall)
    gaps = [b - a for a, b in itertools.pairwise(marks)]
    return {
        "command": f"diffdesign {domain} {verb} " + " ".join(argv[5:]),
        "rc": None if timed_out else rc,
        "status": f"timeout after {timeout:.0f} s"
        if timed_out
        else ("ok" if rc == 0 else f"failed (rc {rc})"),
        "wall_s": wall,
        "first_output_s": marks[1] if len(marks) > 2 else None,
        "longest_silence_s": max(gaps),
        "output_lines": len(lines),
        "tail": lines[-TAIL_LINES:],
        "within_target": (not timed_out) and rc == 0 and wall <= TARGET_S,
        "load_1min": os.getloadavg()[0],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", help="comma-separated domain/verb (default: every command)")
    parser.add_argument("--warm", action="store_true", help="also a rerun with a filled cache")
    parser.add_argument("--timeout-s", type=float, default=900.0)
    parser.add_argument("--smoke", action="store_true", help="only ares/track (for CI)")
    args = parser.parse_args(argv)
    known = commands()
    chosen = ["ares/track"] if args.smoke else (args.only.split(",") if args.only else known)
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        parser.error(f"--only: unknown commands {unknown}; known: {known}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for command in chosen:
            cache = Path(tmp) / command.replace("/", "_") / "cache"
            runs = {"cold": run_once(command, cache.parent / "cold", cache, args.timeout_s)}
            if args.warm:
                runs["warm"] = run_once(command, cache.parent / "warm", cache, args.timeout_s)
            results[command] = runs
            line = ", ".join(f"{k} {r['wall_s']:.1f} s (silent up to {r['longest_silence_s']:.1f}"
                             f" s, {r['status']})" for k, r in runs.items())  # fmt: skip
            print(f"{command}: {line}", flush=True)
    cold = [r["cold"] for r in results.values()]
    report = {
        "description": __doc__,
        "target_s": TARGET_S,
        "cpu_count": os.cpu_count(),
        "smoke": args.smoke,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commands": results,
        "within_target": sum(r["within_target"] for r in cold),
        "of": len(cold),
        "slowest_cold_s": max(r["wall_s"] for r in cold),
        "longest_silence_s": max(r["longest_silence_s"] for r in cold),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{report['within_target']} of {report['of']} smoke runs within {TARGET_S:.0f} s; "
          f"slowest {report['slowest_cold_s']:.1f} s; wrote {args.out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
