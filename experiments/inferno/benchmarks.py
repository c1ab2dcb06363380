"""the INFERNO paper's synthetic benchmarks 0-4

Classifier and INFERNO summaries over many initialisations, the optimal classifier and the
likelihood bound (its Table 2), and benchmark 2's profile likelihoods. Settings: TOML keys of
InfernoStudyConfig (all optional). Checkpointed: rerun into the same --out to resume.
"""

from __future__ import annotations

import argparse
import dataclasses

#: The config class of this study (``diffdesign sweep`` validates every point with it).
CONFIG = "experiments.inferno._study:InfernoStudyConfig"


def run(args: argparse.Namespace) -> dict[str, str]:
    from pathlib import Path

    from diffdesign.core.verdict import StudySummary, Verdict
    from experiments.inferno._mixture import PAPER_TABLE_2
    from experiments.inferno._study import InfernoStudyConfig, run_study

    config = InfernoStudyConfig.from_toml(args.config) if args.config else InfernoStudyConfig()
    config = config.smoke() if args.smoke else config
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
    results = run_study(config, args.out)
    rows = results["rows"]
    print(
        f"\nexpected uncertainty on s, median over {config.n_initialisations} initialisations "
        "(the paper's in brackets)"
    )
    print(f"{'model':28s}" + "".join(f"{'benchmark ' + str(i):>18s}" for i in range(5)))
    lines = [("NN classifier", [q["median"] for q in rows["classifier"]], "classifier")]
    matching = results["matching_inferno"]
    lines.append(
        (
            "INFERNO (matching)",
            [matching.get(str(i), {}).get("median", float("nan")) for i in range(5)],
            "inferno",
        )
    )
    lines += [
        ("optimal classifier", rows["optimal_classifier"], "optimal_classifier"),
        ("analytical likelihood", rows["analytic"], "analytic"),
    ]
    for label, values, key in lines:
        print(
            f"{label:28s}"
            + "".join(
                f"{v:9.2f} [{p:6.2f}]" for v, p in zip(values, PAPER_TABLE_2[key], strict=True)
            )
        )
    print(f"wrote {Path(args.out) / 'results.json'} and plots")
    figures = {
        f"INFERNO, benchmark {i}": f"{q['median']:.2f} events expected uncertainty on s (paper "
        f"{PAPER_TABLE_2['inferno'][int(i)]:.2f})"
        for i, q in matching.items()
    }
    return StudySummary(figures, Verdict.from_json(results["verdict"]))
