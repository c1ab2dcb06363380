"""Surrogate artefacts: bit-equal round trip; refusal of pickles and mismatched cards."""

import json
import pickle

import jax
import numpy as np
import pytest

from diffdesign.surrogates import artefacts, surrogate
from diffdesign.surrogates.flows import ConditionalFlow

FLOW = ConditionalFlow(y_dim=2, n_layers=2, n_bins=4, hidden=(8,))
CARD = {
    "simulator": {"name": "toy", "version": "3"},
    "command": "diffdesign x y",
    "seed": 0,
    "validation": {"coverage_68": 0.7},
}


@pytest.fixture
def saved(tmp_path):
    state = surrogate.init(FLOW, jax.random.key(0), 1, 2)
    # non-trivial weights and standardisation
    state = jax.tree.map(
        lambda a: a + jax.random.normal(jax.random.key(1), a.shape, a.dtype), state
    )
    folder = artefacts.save_surrogate(tmp_path / "toy", state, CARD, FLOW)
    return folder, state


def load(folder, **change):
    expected = {"simulator": "toy", "version": "3", "flow": FLOW, "c_dim": 3, **change}
    return artefacts.load_surrogate(folder, **expected)


def test_round_trip_is_bit_equal_and_keeps_the_card(saved):
    folder, state = saved
    loaded, card = load(folder)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(loaded), strict=True):
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    assert jax.tree.structure(state) == jax.tree.structure(loaded)
    assert card["command"] == "diffdesign x y" and card["flow"]["hidden"] == [8]
    assert card["weights"]["sha256"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"simulator": "other"}, "simulator.name"),
        ({"version": "4"}, "simulator.version"),
        ({"flow": ConditionalFlow(y_dim=2, n_layers=3, n_bins=4, hidden=(8,))}, "flow.n_layers"),
        ({"flow": ConditionalFlow(y_dim=2, n_layers=2, n_bins=4, hidden=(16,))}, "flow.hidden"),
        ({"c_dim": 4}, "dimensions.c_dim"),
    ],
)
def test_mismatched_card_is_refused_naming_field_expected_and_found(saved, change, field):
    folder, _ = saved
    with pytest.raises(ValueError, match=rf"'{field}' does not match: expected .+, found"):
        load(folder, **change)


def test_changed_weights_are_refused(saved):
    folder, _state = saved
    arrays = dict(np.load(folder / "weights.npz"))
    arrays["y_mean"] = arrays["y_mean"] + 1
    np.savez(folder / "weights.npz", **arrays)
    with pytest.raises(ValueError, match=r"weights\.sha256"):
        load(folder)


def test_pickle_files_and_pickled_arrays_are_refused(saved, tmp_path):
    folder, _ = saved
    (folder / "extra.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match=r"holds a pickle \(extra.pkl\)"):
        load(folder)
    (folder / "extra.pkl").unlink()
    np.savez(folder / "more.npz", objects=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"more.npz needs pickle"):
        load(folder)


def test_names_resolve_under_the_repository_surrogates_folder(tmp_path):
    assert artefacts.resolve("ares_screen") == artefacts.ARTEFACTS / "ares_screen"
    assert artefacts.ARTEFACTS.name == "surrogates" and (artefacts.ARTEFACTS / "README.md").exists()
    assert artefacts.resolve(tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="no surrogate artefact folder"):
        load(tmp_path / "missing")


def test_card_must_name_simulator_and_command(tmp_path):
    state = surrogate.init(FLOW, jax.random.key(0), 1, 2)
    with pytest.raises(ValueError, match="card must hold 'command'"):
        artefacts.save_surrogate(
            tmp_path, state, {"simulator": {"name": "a", "version": "1"}}, FLOW
        )
    with pytest.raises(ValueError, match="JSON-serialisable"):
        artefacts.save_surrogate(tmp_path, state, {**CARD, "x": float("nan")}, FLOW)


def test_the_committed_screen_artefact_has_a_complete_card():
    card = json.loads((artefacts.ARTEFACTS / "ares_screen" / "card.json").read_text())
    for field in ("simulator", "flow", "seed", "data", "training", "validation", "command"):
        assert field in card
    assert card["command"].startswith("diffdesign joint screen_surrogate")
    assert not card["smoke"]
