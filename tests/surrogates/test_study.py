"""The L-GSO benchmark study runs end to end (smoke sizes), resumes, validates its config."""

import dataclasses
import json

import pytest

from diffdesign.cli import main
from experiments.lgso._study import LgsoStudyConfig, _run_order, run_study


@pytest.mark.smoke
def test_study_runs_writes_results_and_resumes(tmp_path, capsys):
    assert main(["lgso", "benchmarks", "--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    summary = results["summary"]["three_hump"]
    assert set(summary) == {"lgso", "numerical", "cma_es", "bayesopt"}
    for entry in summary.values():
        assert entry["median_calls_spent"] <= 30_000
        assert -1.0 < entry["median_final_objective"] < 0.0
    assert (tmp_path / "three_hump.png").stat().st_size > 10_000
    assert [c["name"] for c in results["verdict"]["checks"]] == [
        *(f"objective, three_hump {m}" for m in ("lgso", "numerical", "cma_es", "bayesopt")),
        "three_hump: true minimum <= best found", "three_hump: simulator calls",
        "finite objectives"]  # fmt: skip
    table = (tmp_path / "results.md").read_text().splitlines()
    assert [row.split(" | ")[1] for row in table[2:]] == [
        "L-GSO",
        "numerical differentiation",
        "CMA-ES",
        "Bayesian optimisation",
    ]
    assert "three_hump" in capsys.readouterr().out
    runs = sorted(p.name for p in (tmp_path / "runs").glob("*.json"))
    assert len(runs) == 4
    before = (tmp_path / "runs" / "three_hump_lgso_0.json").stat().st_mtime_ns
    assert main(["lgso", "benchmarks", "--smoke", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "runs" / "three_hump_lgso_0.json").stat().st_mtime_ns == before
    # runs saved with other settings are not mixed into a study
    changed = tmp_path / "changed.toml"
    changed.write_text("cma_sigma0 = 0.2\n")
    config = LgsoStudyConfig.from_toml(changed).smoke()
    with pytest.raises(ValueError, match=r"three_hump_cma_es_0\.json was made with other settings"):
        run_study(config, tmp_path)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ('problems = ["hartmann"]\n', "problems must be a non-empty subset"),
        ('methods = ["adam"]\n', "methods must be a non-empty subset"),
        ("budgets = [1.0]\n", "budgets must be 4 positive call counts"),
        ("seeds = 0\n", "seeds must be >= 1"),
        ("cma_sigma0 = -1.0\n", "cma_sigma0 must be > 0"),
        ("bo_seeds = 4\n", r"bo_seeds must be in \[1, seeds=3\]"),
        ('bo_seeds = "one"\n', "bo_seeds"),
    ],
)
def test_config_errors(tmp_path, content, match):
    bad = tmp_path / "bad.toml"
    bad.write_text(content)
    with pytest.raises(ValueError, match=match):
        LgsoStudyConfig.from_toml(bad)


def test_bo_runs_come_last_seed_by_seed_and_can_be_fewer():
    config = LgsoStudyConfig(
        problems=("three_hump", "rosenbrock_10d"), budgets=(1e5, 2e5), bo_seeds=2
    )
    order = [(name, method, seed) for name, method, seed, _ in _run_order(config)]
    assert len(order) == 2 * 3 * 3 + 2 * 2
    assert order[-4:] == [
        ("three_hump", "bayesopt", 0),
        ("rosenbrock_10d", "bayesopt", 0),
        ("three_hump", "bayesopt", 1),
        ("rosenbrock_10d", "bayesopt", 1),
    ]
    assert all(method != "bayesopt" for _, method, _ in order[:-4])
    assert len(_run_order(dataclasses.replace(config, bo_seeds=None))) == 2 * 4 * 3
