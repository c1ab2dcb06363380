"""The ``diffdesign`` command: ``diffdesign <domain> <verb> [INPUT] [flags]``.

The commands are the study modules of the repository's ``experiments/`` package, one
module per command (``experiments/<domain>/<verb>.py``): its docstring gives the help, its
``add_arguments(parser)`` its own flags, its ``run(args)`` the work. Every command gets the
same flags: ``--config TOML``, ``--out DIR``, ``--smoke``, ``--seed N``, ``--quiet``; a
command rerun into the same ``--out`` resumes where it stopped. ``diffdesign sweep
SPEC.toml`` runs any command whose module declares ``CONFIG`` over axes of its config keys.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import diffdesign  # noqa: F401  (float64 on)

#: Where the studies live: the repository's experiments/ folder (``DIFFDESIGN_EXPERIMENTS``
#: names another checkout's).
EXPERIMENTS = Path(
    os.environ.get("DIFFDESIGN_EXPERIMENTS", Path(__file__).resolve().parents[1] / "experiments")
)


def _experiments() -> ModuleType:
    root = str(EXPERIMENTS.parent)
    if not (EXPERIMENTS / "__init__.py").exists():
        raise SystemExit(
            f"diffdesign: error: no studies found in {EXPERIMENTS}; the commands are the "
            "experiments/ of a repository checkout (install it with pip install -e .)"
        )
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("experiments")


def discover() -> dict[str, dict[str, ModuleType]]:
    """``{domain: {verb: command module}}`` from ``experiments/<domain>/<verb>.py``."""
    package = _experiments()
    commands: dict[str, dict[str, ModuleType]] = {}
    for domain in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not domain.ispkg or domain.name.startswith("_"):
            continue
        group = importlib.import_module(f"experiments.{domain.name}")
        verbs = {}
        for verb in pkgutil.iter_modules(group.__path__):
            if verb.ispkg or verb.name.startswith("_"):
                continue
            module = importlib.import_module(f"experiments.{domain.name}.{verb.name}")
            if callable(getattr(module, "run", None)):
                verbs[verb.name] = module
        if verbs:
            commands[domain.name] = dict(sorted(verbs.items()))
    return commands


def _first_line(module: ModuleType) -> str:
    return (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""


def _add_common_flags(parser: argparse.ArgumentParser, domain: str, verb: str, module) -> None:
    default_config = getattr(module, "DEFAULT_CONFIG", None)
    common = parser.add_argument_group("common flags (every command)")
    common.add_argument(
        "--config", metavar="TOML",
        help="study settings, every key optional (default: "
        f"{default_config or 'the built-in defaults'}; examples in experiments/{domain}/)",
    )  # fmt: skip
    common.add_argument(
        "--out", metavar="DIR",
        default=getattr(module, "DEFAULT_OUT", None) or f"results/{domain}_{verb}",
        help="output folder; rerun into the same one to resume (default: %(default)s)",
    )  # fmt: skip
    common.add_argument("--smoke", action="store_true",
                        help="tiny sizes, to check that it runs")  # fmt: skip
    common.add_argument("--seed", type=int, metavar="N",
                        help="overrides the config's seed (default: the config's)")  # fmt: skip
    common.add_argument("--quiet", action="store_true", help="no progress output")
    common.add_argument("--json-progress", action="store_true",
                        help="progress as JSON lines on stderr, for programs watching the run")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every option with a default shows it, unless its help
    already says what the default is (flags that are off by default show nothing)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text.lower() or default is None or default is False
                or default == argparse.SUPPRESS or not action.option_strings):  # fmt: skip
            return text
        return text + " (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffdesign", description=__doc__.splitlines()[0], allow_abbrev=False,
        formatter_class=_HelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version",
                        version=f"diffdesign {_version()}")  # fmt: skip
    domains = parser.add_subparsers(dest="domain", required=True, metavar="DOMAIN")
    _add_sweep(domains)
    for domain, verbs in discover().items():
        group = sys.modules[f"experiments.{domain}"]
        sub = domains.add_parser(domain, help=_first_line(group), allow_abbrev=False)
        commands = sub.add_subparsers(dest="command", required=True, metavar="COMMAND")
        for verb, module in verbs.items():
            doc = (module.__doc__ or "").strip()
            command = commands.add_parser(
                verb, help=_first_line(module), description=doc, allow_abbrev=False,
                formatter_class=_HelpFormatter,
            )  # fmt: skip
            if hasattr(module, "add_arguments"):
                module.add_arguments(command)
            _add_common_flags(command, domain, verb, module)
            command.set_defaults(module=module)
    return parser


def _add_sweep(domains) -> None:
    from diffdesign.sweep import spec as sweep_spec

    sweep = domains.add_parser(
        "sweep", help="run any study over axes of its settings (SPEC.toml)", allow_abbrev=False,
        description="Run the command named by SPEC.toml's target at every point of its axes: "
        "as one vmapped program sharded over the devices where the study is pure in the "
        "swept keys, point by point where not. Every finished chunk or point is recorded "
        "atomically; rerun into the same --out to resume. Writes results.jsonl, results.nc "
        "and plots.\n\nSPEC.toml:\n" + sweep_spec.__doc__.split("::", 1)[1],
        formatter_class=_HelpFormatter,
    )  # fmt: skip
    sweep.add_argument("spec", metavar="SPEC.toml", help="the sweep file")
    sweep.add_argument("--out", metavar="DIR",
                       help="output folder (default: results/sweep_<SPEC name>)")  # fmt: skip
    sweep.add_argument("--separate", action="store_true",
                       help="run every point on its own, even where it could batch")  # fmt: skip
    sweep.add_argument("--smoke", action="store_true",
                       help="two values per axis, each study with --smoke")  # fmt: skip
    sweep.add_argument("--check", action="store_true",
                       help="check every point's config, run nothing")  # fmt: skip
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.add_argument("--json-progress", action="store_true",
                       help="progress as JSON lines on stderr, for programs watching the run")
    hosts = sweep.add_argument_group(
        "several processes (jax.distributed.initialize; the same command on each)"
    )
    hosts.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    hosts.add_argument("--num-processes", type=int, metavar="N", default=1,
                       help="processes in the run (default: %(default)s)")  # fmt: skip
    hosts.add_argument("--process-id", type=int, metavar="I", default=0,
                       help="this process's index, 0 .. N-1 (default: %(default)s)")  # fmt: skip
    sweep.set_defaults(module=None)


def command_target(name: str, smoke: bool = False):
    """The sweep target of the command ``"domain verb"``: its ``sweep_target()`` if it has
    one (a batched study), else a study run point by point through its ``CONFIG`` (with
    ``--smoke`` if ``smoke``)."""
    from diffdesign.sweep import StudyTarget

    commands = discover()
    domain, verb = name.split()
    module = commands.get(domain, {}).get(verb)
    if module is None:
        known = [f"{d} {v}" for d, verbs in commands.items() for v in verbs]
        raise ValueError(f"target {name!r} is not a command; commands: {known}")
    if hasattr(module, "sweep_target"):
        return module.sweep_target()
    if not isinstance(getattr(module, "CONFIG", None), str):
        raise ValueError(f"command {name!r} declares no CONFIG class, so it cannot be swept")
    path, _, cls = module.CONFIG.partition(":")
    config_type = getattr(importlib.import_module(path), cls)
    return StudyTarget(name, config_type, _CommandRun(domain, verb, smoke))


class _CommandRun:
    """Run a command at one sweep point: its config written to ``out/config.toml``, its
    own flags at their defaults, its results read from ``out/results.json``."""

    def __init__(self, domain: str, verb: str, smoke: bool = False):
        self.domain, self.verb, self.smoke = domain, verb, smoke

    def __call__(self, point, out: Path) -> dict:
        import json

        from diffdesign._config import to_toml

        out.mkdir(parents=True, exist_ok=True)
        config = out / "config.toml"
        config.write_text(to_toml(point))
        flags = ["--config", str(config), "--out", str(out), "--quiet"]
        args = build_parser().parse_args(
            [self.domain, self.verb, *flags, *(["--smoke"] if self.smoke else [])]
        )
        summary = args.module.run(args) or {}
        results = out / "results.json"
        return json.loads(results.read_text()) if results.exists() else dict(summary)


def _run_sweep(args: argparse.Namespace) -> dict[str, str]:
    import jax

    from diffdesign import sweep

    spec = sweep.SweepSpec.from_toml(args.spec)
    spec = spec.smoke() if args.smoke else spec
    if args.num_processes > 1 or args.coordinator:
        if not args.coordinator:
            raise ValueError("--num-processes > 1 needs --coordinator HOST:PORT")
        if not 0 <= args.process_id < args.num_processes:
            raise ValueError(
                f"--process-id must lie in [0, {args.num_processes - 1}]; got {args.process_id}"
            )
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    target = command_target(spec.target, args.smoke)
    if args.check:
        _, shape, points = sweep.check(target, spec.axes, spec.fixed)
        return {"points": f"{len(points)} = {' x '.join(map(str, shape))}, all valid"}
    out = Path(args.out or f"results/sweep_{Path(args.spec).stem}")
    result = sweep.run(
        target, spec.axes, out, fixed=spec.fixed, chunk=spec.chunk,
        memory_budget_gib=spec.memory_budget_gib, separate=spec.separate or args.separate,
        outcomes=spec.outcomes, pareto=spec.pareto, progress=not args.quiet,
    )  # fmt: skip
    per_point = result.work_s / result.computed if result.computed else float("nan")
    return {
        "points": f"{result.n} ({result.computed} run now, {result.n - result.computed} "
        "from earlier records)",
        "wall time": f"{result.wall_s:.3g} s (points' own work {result.work_s:.3g} s, "
        f"{per_point * 1e3:.3g} ms per point)",
        "devices": f"{jax.device_count()} ({jax.devices()[0].platform}) on "
        f"{jax.process_count()} process(es)",
        "table": f"{out / 'results.jsonl'}, {out / 'results.nc'}",
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("diffdesign")
    except PackageNotFoundError:
        return "unknown"


def _print_summary(summary) -> None:
    """The study's headline figures, then its verdict block (:mod:`diffdesign.core.verdict`);
    a study may return the figures alone (a dict)."""
    from diffdesign.core.verdict import StudySummary

    if not isinstance(summary, StudySummary):
        summary = StudySummary(summary)
    print()
    if summary.figures:
        width = max(len(label) for label in summary.figures)
        for label, value in summary.figures.items():
            print(f"{label:{width}s}  {value}")
    lines = summary.verdict.lines()
    if lines:
        print()
        print("\n".join(lines))


def _persistent_compilation_cache() -> None:
    """Keep compiled XLA programs between runs of the command (``~/.cache/diffdesign/jax``;
    ``DIFFDESIGN_JAX_CACHE`` names another folder, or ``off``), so that repeated runs of a
    study skip most of their compile time."""
    import jax

    where = os.environ.get("DIFFDESIGN_JAX_CACHE", str(Path.home() / ".cache/diffdesign/jax"))
    if where.lower() != "off" and jax.config.jax_compilation_cache_dir is None:
        jax.config.update("jax_compilation_cache_dir", where)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _persistent_compilation_cache()
    module = args.module
    if (
        module is not None
        and getattr(module, "DEFAULT_CONFIG", None) is not None
        and args.config is None
    ):
        args.config = str(module.DEFAULT_CONFIG)
    from diffdesign._progress import CompileNotices, use_json
    from diffdesign.core.interrupt import Interrupted, stop_on_signal

    try:
        use_json(args.json_progress)
        notices = contextlib.nullcontext() if args.quiet else CompileNotices()
        with stop_on_signal(), notices:  # Ctrl-C / SIGTERM: finish the step, keep the checkpoint
            summary = _run_sweep(args) if module is None else module.run(args)
    except (ValueError, OSError) as error:  # bad input, unreadable or unwritable files
        print(f"diffdesign: error: {error}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(f"diffdesign: {stop}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("diffdesign: interrupted; rerun the same command into the same --out to resume "
              "from its last checkpoint", file=sys.stderr)  # fmt: skip
        return 130
    if summary:
        _print_summary(summary)
    _write_report(args, summary, argv)
    return 0


def _write_report(args: argparse.Namespace, summary, argv: Sequence[str] | None) -> None:
    """``report.html`` in the run's --out (:mod:`diffdesign.report`), when it is a folder."""
    from diffdesign.core.verdict import StudySummary
    from diffdesign.report import write_report

    out = Path(args.out) if getattr(args, "out", None) else None
    if out is None or not out.is_dir():
        return
    if not isinstance(summary, StudySummary):
        summary = StudySummary(summary or {})
    name = "sweep" if args.module is None else " ".join(args.module.__name__.split(".")[1:])
    config = getattr(args, "config", None) or getattr(args, "spec", None)
    config_text = Path(config).read_text() if config and Path(config).is_file() else None
    command = "diffdesign " + " ".join(sys.argv[1:] if argv is None else argv)
    path = write_report(out, f"diffdesign {name}", command, summary.figures, summary.verdict,
                        config_text)  # fmt: skip
    if not args.quiet:
        print(f"report: {path}")


if __name__ == "__main__":
    sys.exit(main())
