"""Bad inputs to diffdesign.surrogates: L-GSO settings and loop, black boxes, artefacts."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest

from diffdesign.surrogates import artefacts, blackbox, lgso
from diffdesign.surrogates.flows import ConditionalFlow
from tests.fuzz._harness import Case, handled, parametrize, raises, run_case

NAN, INF = float("nan"), float("inf")


def _config(**changes):
    fields = dict(
        epsilon=0.2, n_points=2, samples_per_point=4, gradient_samples=8, train_steps=1,
        batch_size=8, flow_layers=1, flow_bins=4, flow_hidden=(4,),
    )  # fmt: skip
    return lgso.LgsoConfig(**(fields | changes))


def _simulator(simulate=None, **changes):
    def default(psi, x, seed):
        return psi[:, :1] + x

    fields = dict(
        simulate_fn=simulate or default,
        sample_inputs_fn=lambda n, seed: np.random.default_rng(seed).normal(size=(n, 1)),
        psi_dim=2, x_dim=1, y_dim=1,
    )  # fmt: skip
    return blackbox.PythonSimulator(**(fields | changes))


def _minimise(objective=lambda y: jnp.sum(y**2, -1), simulator=None, **kwargs):
    options = dict(psi0=[0.0, 0.0], config=_config(), max_calls=12, progress=False)
    options |= kwargs
    return lgso.minimise(simulator or _simulator(), objective, **options)


CASES = [
    Case(
        "lgso epsilon nan",
        lambda: _config(epsilon=NAN),
        raises(r"epsilon must be a number > 0; got nan"),
    ),
    Case("lgso epsilon string", lambda: _config(epsilon="wide"), raises(r"epsilon must be")),
    Case("lgso learning rate -1", lambda: _config(learning_rate=-1.0), raises(r"learning_rate")),
    Case("lgso n_points 0", lambda: _config(n_points=0), raises(r"n_points must be >= 1")),
    Case(
        "lgso n_points 2.5", lambda: _config(n_points=2.5), raises(r"n_points must be an integer")
    ),
    Case("lgso batch size None", lambda: _config(batch_size=None), raises(r"batch_size")),
    Case("lgso history radius 0.5", lambda: _config(history_radius=0.5), raises(r"history_radius")),
    Case("lgso flow hidden 0", lambda: _config(flow_hidden=(0,)), raises(r"flow_hidden")),
    Case("minimise psi0 wrong shape", lambda: _minimise(psi0=[0.0]), raises(r"psi0 must be")),
    Case("minimise psi0 inf", lambda: _minimise(psi0=[INF, 0.0]), raises(r"psi0 must be")),
    Case("minimise psi0 strings", lambda: _minimise(psi0=["a", "b"]), raises(r"psi0")),
    Case(
        "minimise budget below one iteration",
        lambda: _minimise(max_calls=3),
        raises(r"max_calls .*12"),
    ),
    Case(
        "minimise objective returns nan",
        lambda: _minimise(objective=lambda y: jnp.sum(y, -1) * jnp.nan),
        raises(r"objective.*not finite"),
    ),
    Case(
        "minimise objective of the wrong shape",
        lambda: _minimise(objective=lambda y: y),
        raises(r"objective.*shape"),
    ),
    Case(
        "minimise simulator returns nan",
        lambda: _minimise(simulator=_simulator(lambda psi, x, seed: x * np.nan)),
        raises(r"simulate returned non-finite values", RuntimeError),
    ),
    Case(
        "minimise simulator returns the wrong shape",
        lambda: _minimise(simulator=_simulator(lambda psi, x, seed: psi)),
        raises(r"simulate returned shape \(\d+, 2\); expected \(\d+, 1\)", RuntimeError),
    ),
    Case("simulator psi_dim 0", lambda: _simulator(psi_dim=0), raises(r"psi_dim must be")),
    Case("simulator y_dim 1.5", lambda: _simulator(y_dim=1.5), raises(r"y_dim must be")),
    Case(
        "run simulation psi nan",
        lambda: blackbox.run_simulation(_simulator(), np.full((2, 2), NAN), np.zeros((2, 1)), 0),
        raises(r"psi must be finite"),
    ),
    Case(
        "run simulation x shape",
        lambda: blackbox.run_simulation(_simulator(), np.zeros((2, 2)), np.zeros((3, 1)), 0),
        raises(r"x must have shape \(2, 1\)"),
    ),
    Case(
        "limit step negative length",
        lambda: lgso.limit_step(np.ones(2), -1.0),
        raises(r"max_length"),
    ),
    Case(
        "limit step of one step",
        lambda: lgso.limit_step(np.array([3.0, 4.0]), 1.0),
        handled(lambda s: np.allclose(np.linalg.norm(s), 1.0)),
    ),
]


@parametrize(CASES)
def test_case(case):
    run_case(case)


FLOW = ConditionalFlow(y_dim=1, n_layers=1, n_bins=4, hidden=(4,))


def _load(folder):
    return artefacts.load_surrogate(folder, simulator="s", version="1", flow=FLOW, c_dim=3)


CARDS = {
    "binary card": (b"\xff\xfe\x00\x81garbage", r"surrogate\.json|card"),
    "empty card": (b"", r"surrogate\.json|card"),
    "card is a list": (b"[1, 2]", r"card"),
    "card of another simulator": (
        json.dumps({"simulator": {"name": "t"}}).encode(),
        r"'simulator.name' does not match: expected 's'",
    ),
}


@pytest.mark.parametrize("kind", list(CARDS), ids=list(CARDS))
def test_artefact_card(kind, tmp_path):
    content, pattern = CARDS[kind]
    (tmp_path / artefacts.CARD).write_bytes(content)
    np.savez(tmp_path / artefacts.WEIGHTS, w=np.zeros(2))
    run_case(Case(f"artefact {kind}", lambda: _load(tmp_path), raises(pattern)))


def test_artefact_missing(tmp_path):
    run_case(
        Case(
            "artefact folder missing",
            lambda: _load(tmp_path / "nope"),
            raises(r"no surrogate artefact folder", FileNotFoundError),
        )
    )


def test_artefact_pickle(tmp_path):
    (tmp_path / "weights.pkl").write_bytes(b"\x80\x04K\x01.")
    run_case(Case("artefact with a pickle", lambda: _load(tmp_path), raises(r"holds a pickle")))


def test_lgso_checkpoint_garbage(tmp_path):
    path = tmp_path / "lgso.npz"
    path.write_bytes(b"PK\x03\x04 not a zip at all")
    run_case(
        Case(
            "lgso checkpoint garbage",
            lambda: _minimise(checkpoint=path),
            raises(r"lgso\.npz.*not a readable diffdesign checkpoint"),
        )
    )


def test_artefact_weights_not_npz(tmp_path):
    (tmp_path / artefacts.CARD).write_text("{}")
    (tmp_path / artefacts.WEIGHTS).write_bytes(b"PK\x03\x04 truncated")
    run_case(
        Case(
            "artefact weights not an npz",
            lambda: _load(tmp_path),
            raises(r"weights\.npz is not a readable \.npz"),
        )
    )
