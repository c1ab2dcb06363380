"""Bad inputs to diffdesign.xpcs: data, loaders, configs, model, fits."""

from __future__ import annotations

import numpy as np
import pytest

from diffdesign.xpcs import io, likelihood, model, nlsq, spec
from diffdesign.xpcs.data import XpcsData, points, shard_points
from tests.fuzz._harness import Case, finite_everywhere, handled, parametrize, raises, run_case

NAN, INF = float("nan"), float("inf")
N_T = 6
T = np.arange(N_T) * 0.1
PHI = np.array([0.0, 90.0])
STATIC = {"D0": 1e3, "alpha": 0.0, "D_offset": 0.0}


def _data(**changes):
    fields = dict(c2=np.ones((2, N_T, N_T)) * 1.2, t=T, phi=PHI, q=0.01, L=2e6, sigma=0.01)
    return XpcsData(**(fields | changes))


def _config(**changes):
    return io.DataConfig.from_mapping(changes, "[data]")


CASES = [
    Case(
        "data without angles",
        lambda: _data(c2=np.ones((0, N_T, N_T)), phi=np.zeros(0)),
        raises(r"phi must hold at least one angle"),
    ),
    Case(
        "data c2 shape",
        lambda: _data(c2=np.ones((2, N_T, N_T + 1))),
        raises(r"c2 must have shape \(n_phi, n_t, n_t\) = \(2, 6, 6\)"),
    ),
    Case(
        "data c2 nan",
        lambda: _data(c2=np.full((2, N_T, N_T), NAN)),
        raises(r"c2 has 72 non-finite values"),
    ),
    Case(
        "data two times",
        lambda: _data(t=T[:2], c2=np.ones((2, 2, 2))),
        raises(r"t must be a 1-D time grid of at least 3 points"),
    ),
    Case("data time decreasing", lambda: _data(t=T[::-1]), raises(r"t must increase strictly")),
    Case("data time not uniform", lambda: _data(t=T**2), raises(r"t must be a uniform grid")),
    Case("data negative start time", lambda: _data(t=T - 1.0), raises(r"t must start at t >= 0")),
    Case("data q zero", lambda: _data(q=0.0), raises(r"q must be a positive finite scalar")),
    Case("data L inf", lambda: _data(L=INF), raises(r"L must be a positive finite scalar")),
    Case(
        "data L vector", lambda: _data(L=[1.0, 2.0]), raises(r"L must be a positive finite scalar")
    ),
    Case("data sigma zero", lambda: _data(sigma=0.0), raises(r"sigma .* must be finite and > 0")),
    Case(
        "data sigma shape",
        lambda: _data(sigma=np.ones(3)),
        raises(r"sigma must be a scalar or have c2's shape"),
    ),
    Case("data c2 strings", lambda: _data(c2="ones"), raises(r"c2", ValueError, TypeError)),
    Case("data phi nan", lambda: _data(phi=np.array([0.0, NAN])), raises(r"phi has 1 non-finite")),
    Case(
        "shard points zero shards",
        lambda: shard_points(points(_data()), 0),
        raises(r"n_shards must be a positive integer"),
    ),
    Case(
        "shard points too many",
        lambda: shard_points(points(_data()), 10_000),
        raises(r"n_shards \(10000\) exceeds the number of points"),
    ),
    Case(
        "make problem unknown mode",
        lambda: likelihood.make_problem(_data(), "turbulent"),
        raises(r"mode .*turbulent"),
    ),
    Case(
        "make problem unknown integral",
        lambda: likelihood.make_problem(_data(), "static", integral="simpson"),
        raises(r"integral must be one of"),
    ),
    Case(
        "make problem scaling as string",
        lambda: likelihood.make_problem(_data(), "static", scaling="individual"),
        raises(r"scaling", TypeError),
    ),
    Case(
        "make problem inverted bounds",
        lambda: likelihood.make_problem(_data(), "static", bounds={"D0": (10.0, 1.0)}),
        raises(r"D0"),
    ),
    Case("scaling unknown name", lambda: likelihood.scaling_from_name("median"), raises(r"median")),
    Case(
        "spec start outside bounds",
        lambda: spec.parameter_spec("static", {"D0": -5.0}),
        raises(r"D0"),
    ),
    Case(
        "spec unknown name",
        lambda: spec.parameter_spec("static", {"D1": 1.0}),
        raises(r"unknown XPCS parameter names \['D1'\]"),
    ),
    Case("spec nan start", lambda: spec.parameter_spec("static", {"alpha": NAN}), raises(r"alpha")),
    Case(
        "spec bounds nan",
        lambda: spec.parameter_spec("static", bounds={"alpha": (NAN, 1.0)}),
        raises(r"alpha"),
    ),
    Case(
        "model g2 missing parameter",
        lambda: model.g2({"D0": 1e3}, T, PHI, 0.01, 2e6),
        raises(r"alpha|D_offset|parameter", ValueError, KeyError),
    ),
    Case(
        "model g2 one time",
        lambda: model.g2(STATIC, T[:1], PHI, 0.01, 2e6),
        raises(r"\bt\b.*two points|\bt must"),
    ),
    Case("model g2 q negative", lambda: model.g2(STATIC, T, PHI, -0.01, 2e6), raises(r"\bq\b")),
    Case(
        "model g2 contrast shape",
        lambda: model.g2(STATIC, T, PHI, 0.01, 2e6, np.ones(3)),
        raises(r"contrast"),
    ),
    Case(
        "model g2 static",
        lambda: model.g2(STATIC, T, PHI, 0.01, 2e6),
        handled(lambda g: finite_everywhere(g) and g.shape == (2, N_T, N_T)),
    ),
    Case(
        "estimate sigma three times",
        lambda: io.estimate_sigma(np.ones((1, 3, 3))),
        raises(r"estimate_sigma needs n_t >= 4"),
    ),
    Case(
        "estimate sigma nan",
        lambda: io.estimate_sigma(np.full((1, 5, 5), NAN)),
        raises(r"c2 must be finite"),
    ),
    Case(
        "estimate sigma 2-d",
        lambda: io.estimate_sigma(np.ones((5, 5))),
        raises(r"c2 must have shape \(n_phi, n_t, n_t\)"),
    ),
    Case("config unknown key", lambda: _config(frame=3), raises(r"unknown key\(s\) \['frame'\]")),
    Case(
        "config phi and range",
        lambda: _config(phi=[0.0], phi_range=[0.0, 10.0]),
        raises(r"give phi .* or phi_range"),
    ),
    Case("config start frame 0", lambda: _config(start_frame=0), raises(r"start_frame")),
    Case(
        "config phi string", lambda: _config(phi="all"), raises(r"phi in \[data\] must be a list")
    ),
    Case("config dt negative", lambda: _config(dt=-0.1), raises(r"\bdt\b")),
    Case("config sigma nan", lambda: _config(sigma=NAN), raises(r"sigma")),
    Case(
        "select angles no match",
        lambda: io.select_angles(PHI, _config(phi=[45.0])),
        raises(r"phi = 45 in \[data\] matches no angle"),
    ),
    Case(
        "fit nlsq zero starts",
        lambda: nlsq.fit_nlsq(_data(), "static", n_starts=0),
        raises(r"n_starts"),
    ),
    Case(
        "fit nlsq unknown solver",
        lambda: nlsq.fit_nlsq(_data(), "static", solver="magic"),
        raises(r"solver"),
    ),
    Case(
        "fit nlsq negative tol",
        lambda: nlsq.fit_nlsq(_data(), "static", tol=-1.0),
        raises(r"\btol\b"),
    ),
    Case(
        "fit nlsq data not XpcsData",
        lambda: nlsq.fit_nlsq({"c2": 1}, "static"),
        raises(r"data must be an XpcsData", TypeError),
    ),
]


@parametrize(CASES)
def test_case(case):
    run_case(case)


FILES = {
    "npz binary garbage": ("data.npz", b"\x00\x01garbage\xff", r"data\.npz' is not an \.npz"),
    "npz empty": ("data.npz", b"", r"data\.npz' is not an \.npz"),
    "npz truncated zip": ("data.npz", b"PK\x03\x04\x14\x00\x00\x00", r"data\.npz"),
    "h5 garbage": ("data.h5", b"\x89HDF\r\n garbage", r"cannot read .*data\.h5.* as HDF5"),
    "toml binary": ("config.toml", b"\xff\xfe\x00bad", r"cannot read config .*config\.toml"),
    "toml malformed": ("config.toml", b"[data\nstart_frame = ", r"cannot read config"),
    "toml data not a table": ("config.toml", b"data = 3\n", r"\[data\]|data.* must be a table"),
    "toml start frame string": (
        "config.toml",
        b"[data]\nstart_frame = 'one'\n",
        r"start_frame.*must be",
    ),
}


def _read(path):
    if path.suffix == ".toml":
        return io.load_data_config(path)
    return io.load_data(path)


@pytest.mark.parametrize("kind", list(FILES), ids=list(FILES))
def test_file(kind, tmp_path):
    name, content, pattern = FILES[kind]
    path = tmp_path / name
    path.write_bytes(content)
    run_case(Case(f"xpcs file {kind}", lambda: _read(path), raises(pattern)))


def test_npz_without_angles(tmp_path):
    path = tmp_path / "empty.npz"
    np.savez(path, c2=np.ones((0, N_T, N_T)), t=T, phi=np.zeros(0), q=0.01, L=2e6, sigma=0.01)
    run_case(
        Case(
            "xpcs npz with no angles",
            lambda: io.read_npz(path),
            raises(r"phi must hold at least one angle"),
        )
    )


def test_npz_with_a_pickle(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, c2=np.array([{"a": 1}], dtype=object), t=T, phi=PHI, q=0.01, L=2e6,
             sigma=0.01)  # fmt: skip
    run_case(
        Case(
            "xpcs npz with a pickle",
            lambda: io.read_npz(path),
            raises(r"key 'c2' of .* holds Python objects"),
        )
    )


def test_npz_missing_key(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, c2=np.ones((2, N_T, N_T)), t=T, phi=PHI)
    run_case(
        Case(
            "xpcs npz missing keys",
            lambda: io.read_npz(path),
            raises(r"missing keys \['q', 'L', 'sigma'\]"),
        )
    )


def test_missing_file(tmp_path):
    run_case(
        Case(
            "xpcs missing file",
            lambda: io.load_data(tmp_path / "nope.npz"),
            raises(r"nope\.npz' does not exist", ValueError, FileNotFoundError),
        )
    )
