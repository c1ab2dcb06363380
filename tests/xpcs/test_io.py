"""diffdesign.xpcs.io: APS HDF5 and npz files, the [data] config, load_data and estimate_sigma."""

import dataclasses

import h5py
import jax
import numpy as np
import pytest

from diffdesign.xpcs import XpcsData, synthetic_c2
from diffdesign.xpcs.examples import EXAMPLES, example_path
from diffdesign.xpcs.examples import make_example as example
from diffdesign.xpcs.io import (
    DataConfig,
    estimate_sigma,
    load_data,
    load_data_config,
    read_aps_hdf5,
    read_npz,
    read_npz_metadata,
    read_toml,
    select_angles,
    write_aps_hdf5,
    write_npz,
)

N_T = 12
PHI = np.array([-30.0, 0.0, 30.0])


def symmetric(rng, n_bins, n=N_T):
    """Random symmetric two-time matrices around 1.2 (never 0, so triangles are non-zero)."""
    upper = np.triu(rng.normal(1.2, 0.1, size=(n_bins, n, n)))
    return upper + np.swapaxes(np.triu(upper, 1), 1, 2)


@pytest.fixture
def c2(rng):
    return symmetric(rng, 3)


@pytest.fixture
def aps_file(tmp_path, c2):
    return write_aps_hdf5(tmp_path / "run.h5", c2, q=0.0054, phi=PHI, frame_time=0.1)


# ----------------------------------------------------------------------------- APS HDF5


@pytest.mark.parametrize("layout", ["aps_u", "aps_old"])
def test_hdf5_round_trip_is_exact(tmp_path, c2, layout):
    path = write_aps_hdf5(
        tmp_path / "run.hdf", c2, q=0.0054, phi=PHI, frame_time=0.05, layout=layout
    )
    ring = read_aps_hdf5(path)
    np.testing.assert_array_equal(ring.c2, c2)
    np.testing.assert_array_equal(ring.phi, PHI)
    assert ring.q == 0.0054
    assert ring.frame_time == 0.05
    assert ring.layout == layout


def test_hdf5_without_frame_time_reads_none(tmp_path, c2):
    path = write_aps_hdf5(tmp_path / "run.h5", c2, q=0.0054, phi=PHI)
    assert read_aps_hdf5(path).frame_time is None


def _write_aps_u_by_hand(path, matrices, processed_bins, names):
    """APS-U layout with homodyne's exact key names, written without our writer."""
    with h5py.File(path, "w") as f:
        f["xpcs/qmap/dynamic_v_list_dim0"] = np.array([0.0030, 0.0054])
        f["xpcs/qmap/dynamic_v_list_dim1"] = np.array([-30.0, 0.0, 30.0])
        f["xpcs/twotime/processed_bins"] = np.asarray(processed_bins, dtype=np.int64)
        group = f.create_group("xpcs/twotime/correlation_map")
        for name, matrix in zip(names, matrices, strict=True):
            group[name] = matrix
        f["entry/instrument/detector_1/frame_time"] = 0.02


def test_reads_the_aps_u_keys_homodyne_reads(tmp_path, rng):
    full = symmetric(rng, 6)
    # Upper triangles (APS storage), bins 1..6 = q index 0..1 x phi index 0..2.
    path = tmp_path / "aps_u.h5"
    names = [f"c2_{b:05d}" for b in range(1, 7)]
    _write_aps_u_by_hand(path, np.triu(full), range(1, 7), names)
    ring = read_aps_hdf5(path, q=0.0055)
    np.testing.assert_array_equal(ring.c2, full[3:])
    np.testing.assert_array_equal(ring.phi, [-30.0, 0.0, 30.0])
    assert ring.q == 0.0054 and ring.frame_time == 0.02 and ring.layout == "aps_u"
    # A lower-triangle half and a full symmetric matrix are read as well.
    _write_aps_u_by_hand(path, np.tril(full), range(1, 7), names)
    np.testing.assert_array_equal(read_aps_hdf5(path, q=0.003).c2, full[:3])
    _write_aps_u_by_hand(path, full, range(1, 7), names)
    np.testing.assert_array_equal(read_aps_hdf5(path, q=0.003).c2, full[:3])


def test_aps_u_bins_follow_processed_bins_and_numeric_name_order(tmp_path, rng):
    full = symmetric(rng, 2)
    path = tmp_path / "aps_u.h5"
    # Bins 6 (q 0.0054, phi 30) and 4 (q 0.0054, phi -30); names sort as 9 < 10 numerically.
    _write_aps_u_by_hand(path, np.triu(full), [6, 4], ["c2_10", "c2_9"])
    ring = read_aps_hdf5(path)
    np.testing.assert_array_equal(ring.phi, [30.0, -30.0])
    np.testing.assert_array_equal(ring.c2, full[::-1])


def test_reads_the_old_aps_keys_homodyne_reads(tmp_path, rng):
    full = symmetric(rng, 4)
    path = tmp_path / "aps_old.hdf"
    with h5py.File(path, "w") as f:
        f["xpcs/dqlist"] = np.array([[0.0054, 0.0054, 0.0081, 0.0054]])
        f["xpcs/dphilist"] = np.array([[0.0, 45.0, 0.0, 90.0]])
        for k in range(4):
            f[f"exchange/C2T_all/c2_{k + 1:05d}"] = np.triu(full[k])
        f["measurement/instrument/detector/exposure_period"] = np.array([[0.01]])
    ring = read_aps_hdf5(path, q=0.0054)
    np.testing.assert_array_equal(ring.c2, full[[0, 1, 3]])
    np.testing.assert_array_equal(ring.phi, [0.0, 45.0, 90.0])
    assert ring.frame_time == 0.01 and ring.layout == "aps_old"


def test_q_selects_the_nearest_ring_and_refuses_a_far_one(tmp_path, rng):
    full = symmetric(rng, 4)
    q = np.array([0.003, 0.003, 0.006, 0.006])
    path = write_aps_hdf5(tmp_path / "rings.h5", full, q=q, phi=[0.0, 90.0, 0.0, 90.0])
    np.testing.assert_array_equal(read_aps_hdf5(path, q=0.0059).c2, full[2:])
    with pytest.raises(ValueError, match=r"2 q rings \(0.003, 0.006 1/Angstrom\).*choose one"):
        read_aps_hdf5(path)
    with pytest.raises(ValueError, match=r"q = 0.01 1/Angstrom matches no ring"):
        read_aps_hdf5(path, q=0.01)
    with pytest.raises(ValueError, match=r"q must lie in"):
        read_aps_hdf5(path, q=-0.003)


def test_missing_keys_are_named_with_the_file(tmp_path, aps_file):
    with h5py.File(aps_file, "a") as f:
        del f["xpcs/twotime/processed_bins"]
    with pytest.raises(ValueError, match=r"run.h5' lacks the dataset 'xpcs/twotime/processed_bins"):
        read_aps_hdf5(aps_file)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["exchange/something"] = np.zeros(3)
    with pytest.raises(
        ValueError, match=r"not an APS two-time file.*top-level keys are \['exchange'\]"
    ):
        read_aps_hdf5(other)
    with pytest.raises(ValueError, match=r"does not exist"):
        read_aps_hdf5(tmp_path / "absent.h5")
    not_hdf5 = tmp_path / "text.h5"
    not_hdf5.write_text("not hdf5")
    with pytest.raises(ValueError, match=r"cannot read .* as HDF5"):
        read_aps_hdf5(not_hdf5)


def test_nan_in_a_matrix_is_named(aps_file):
    with h5py.File(aps_file, "a") as f:
        f["xpcs/twotime/correlation_map/c2_00002"][3, 5] = np.nan
    with pytest.raises(ValueError, match=r"'xpcs/twotime/correlation_map/c2_00002'.*1 NaN"):
        read_aps_hdf5(aps_file)


def test_inconsistent_shapes_are_errors(tmp_path, rng, aps_file):
    with h5py.File(aps_file, "a") as f:
        del f["xpcs/twotime/correlation_map/c2_00003"]
        f["xpcs/twotime/correlation_map/c2_00003"] = np.triu(symmetric(rng, 1, N_T + 1)[0])
    with pytest.raises(ValueError, match=r"differ in shape"):
        read_aps_hdf5(aps_file)
    with h5py.File(aps_file, "a") as f:
        del f["xpcs/twotime/correlation_map/c2_00003"]
    with pytest.raises(ValueError, match=r"holds 2 matrices but .*processed_bins' lists 3 bins"):
        read_aps_hdf5(aps_file)
    old = write_aps_hdf5(
        tmp_path / "old.h5", symmetric(rng, 2), q=0.005, phi=[0, 1], layout="aps_old"
    )
    with h5py.File(old, "a") as f:
        del f["xpcs/dphilist"]
        f["xpcs/dphilist"] = np.array([[0.0, 1.0, 2.0]])
    with pytest.raises(ValueError, match=r"'xpcs/dqlist' \(2\), 'xpcs/dphilist' \(3\)"):
        read_aps_hdf5(old)


def test_a_matrix_neither_half_nor_symmetric_is_refused(aps_file, rng):
    with h5py.File(aps_file, "a") as f:
        f["xpcs/twotime/correlation_map/c2_00001"][...] = rng.normal(1.0, 0.1, (N_T, N_T))
    with pytest.raises(ValueError, match=r"neither half-stored .* nor symmetric"):
        read_aps_hdf5(aps_file)


def test_write_aps_hdf5_refuses_bad_input(tmp_path, c2, rng):
    with pytest.raises(ValueError, match=r"must end in one of"):
        write_aps_hdf5(tmp_path / "run.txt", c2, q=0.005, phi=PHI)
    with pytest.raises(ValueError, match=r"layout must be one of"):
        write_aps_hdf5(tmp_path / "run.h5", c2, q=0.005, phi=PHI, layout="esrf")
    with pytest.raises(ValueError, match=r"must be symmetric"):
        write_aps_hdf5(tmp_path / "run.h5", rng.normal(size=(3, 4, 4)), q=0.005, phi=PHI)
    with pytest.raises(ValueError, match=r"one angle per bin"):
        write_aps_hdf5(tmp_path / "run.h5", c2, q=0.005, phi=PHI[:2])
    with pytest.raises(ValueError, match=r"share the same"):
        write_aps_hdf5(tmp_path / "run.h5", c2, q=0.005, phi=[0.0, 0.0, 1.0])


# ----------------------------------------------------------------------------- npz


@pytest.fixture
def data(c2):
    return XpcsData(c2=c2, t=0.1 * np.arange(N_T), phi=PHI, q=0.0054, L=2e6, sigma=0.02)


@pytest.mark.parametrize("sigma_shape", ["scalar", "full"])
def test_npz_round_trip_is_exact(tmp_path, data, sigma_shape, rng):
    if sigma_shape == "full":
        data = dataclasses.replace(data, sigma=rng.uniform(0.01, 0.02, data.c2.shape))
    path = write_npz(tmp_path / "data.npz", data, sample="silica", temperature_K=293.0)
    back = read_npz(path)
    for key in ("c2", "t", "phi", "q", "L", "sigma"):
        np.testing.assert_array_equal(getattr(back, key), getattr(data, key))
    assert read_npz_metadata(path) == {"sample": "silica", "temperature_K": 293.0}


def _save(path, **arrays):
    np.savez(path, **arrays)
    return path


def _arrays(data):
    return {k: np.asarray(getattr(data, k)) for k in ("c2", "t", "phi", "q", "L", "sigma")}


def test_npz_missing_and_unknown_keys_are_named(tmp_path, data):
    arrays = _arrays(data)
    del arrays["L"]
    path = _save(tmp_path / "a.npz", **arrays, gap=2e6)
    with pytest.raises(ValueError, match=r"missing keys \['L'\], unknown keys \['gap'\]"):
        read_npz(path)


def test_pickle_only_npz_is_refused(tmp_path, data):
    arrays = _arrays(data)
    arrays["c2"] = np.array([{"c2": 1.0}], dtype=object)
    path = _save(tmp_path / "pickled.npz", **arrays)
    with pytest.raises(ValueError, match=r"key 'c2' .* holds Python objects .*allow_pickle=False"):
        read_npz(path)
    plain = tmp_path / "plain.npz"
    plain.write_text("not a zip")
    with pytest.raises(ValueError, match=r"not an .npz archive"):
        read_npz(plain)
    strings = _save(tmp_path / "strings.npz", **{**_arrays(data), "q": np.array("0.0054")})
    with pytest.raises(ValueError, match=r"key 'q' .* must hold numbers"):
        read_npz(strings)


def test_npz_with_bad_data_is_refused(tmp_path, data):
    arrays = _arrays(data)
    arrays["t"] = np.r_[0.0, 0.1, 0.25, 0.1 * np.arange(3, N_T)]
    with pytest.raises(ValueError, match=r"t must increase|uniform grid"):
        read_npz(_save(tmp_path / "t.npz", **arrays))
    arrays = _arrays(data)
    arrays["c2"] = arrays["c2"].copy()
    arrays["c2"][1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"c2 has 1 non-finite"):
        read_npz(_save(tmp_path / "nan.npz", **arrays))
    arrays = _arrays(data)
    arrays["phi"] = arrays["phi"][:2]
    with pytest.raises(ValueError, match=r"c2 must have shape"):
        read_npz(_save(tmp_path / "shape.npz", **arrays))


def test_write_npz_refuses_bad_input(tmp_path, data):
    with pytest.raises(ValueError, match=r"must end in .npz"):
        write_npz(tmp_path / "data.np", data)
    with pytest.raises(ValueError, match=r"metadata 'when' must be JSON-serialisable"):
        write_npz(tmp_path / "data.npz", data, when=object())


# ----------------------------------------------------------------------------- config

CONFIG = """
[data]
file = "run.h5"
q = 0.0054
L = 2e6
start_frame = 3
end_frame = 10
phi = [30, -30]

[model]
mode = "laminar_flow"

[nlsq]
max_steps = 100
"""


def test_config_reads_data_and_keeps_the_other_tables(tmp_path):
    path = tmp_path / "fit.toml"
    path.write_text(CONFIG)
    config = load_data_config(path)
    assert config == DataConfig(
        file=str(tmp_path / "run.h5"),
        q=0.0054,
        L=2e6,
        start_frame=3,
        end_frame=10,
        phi=(30, -30),
    )
    content = read_toml(path)
    assert content["model"] == {"mode": "laminar_flow"} and content["nlsq"]["max_steps"] == 100
    empty = tmp_path / "empty.toml"
    empty.write_text("[model]\nmode = 'static'\n")
    assert load_data_config(empty) == DataConfig()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"gap": 2e6}, r"unknown key\(s\) \['gap'\] in \[data\].*allowed: \['file', 'q', 'L'"),
        ({"q": -0.0054}, "q must lie in"),
        ({"q": "0.0054"}, "q in .* must be a number"),
        ({"L": 0.0}, "L must be > 0"),
        ({"dt": True}, "dt in .* must be a number"),
        ({"start_frame": 10, "end_frame": 10}, "end_frame must be > start_frame"),
        ({"start_frame": 0}, "start_frame must lie in"),
        ({"start_frame": 1.5}, "start_frame in .* must be an integer"),
        ({"phi": [0], "phi_range": [-10, 10]}, "not both"),
        ({"phi": [0, 360]}, "lists an angle twice"),
        ({"phi": []}, "at least 1 angles"),
        ({"phi_range": [10, -10]}, "low <= high"),
        ({"phi_tolerance": 0}, r"phi_tolerance .* \(0, 180\]"),
        ({"sigma": -1.0}, "sigma must lie in"),
    ],
)
def test_bad_config_values_are_named(tmp_path, table, message):
    with pytest.raises(ValueError, match=message):
        DataConfig.from_mapping(table)


def test_config_file_errors(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[data\nq = 1")
    with pytest.raises(ValueError, match=r"cannot read config"):
        load_data_config(broken)
    not_table = tmp_path / "flat.toml"
    not_table.write_text("data = 3\n")
    with pytest.raises(ValueError, match=r"must be a table"):
        load_data_config(not_table)


# ----------------------------------------------------------------------------- load_data


def test_frame_range_is_one_based_inclusive_and_time_restarts(aps_file, c2):
    config = DataConfig(L=2e6, start_frame=3, end_frame=10, sigma=0.01)
    data = load_data(aps_file, config)
    np.testing.assert_array_equal(data.c2, c2[:, 2:10, 2:10])
    np.testing.assert_allclose(data.t, 0.1 * np.arange(8), rtol=0, atol=1e-15)
    assert float(data.sigma) == 0.01 and float(data.L) == 2e6 and float(data.q) == 0.0054


def test_frame_range_outside_the_data_is_an_error(aps_file):
    with pytest.raises(ValueError, match=f"end_frame must be <= {N_T}"):
        load_data(aps_file, DataConfig(L=2e6, end_frame=N_T + 1))
    with pytest.raises(ValueError, match=r"leave 2 times; a fit needs at least 3"):
        load_data(aps_file, DataConfig(L=2e6, start_frame=5, end_frame=6))
    with pytest.raises(ValueError, match=r"leave 0 times"):
        load_data(aps_file, DataConfig(L=2e6, start_frame=N_T + 2))


def test_angle_selection(aps_file, c2):
    data = load_data(aps_file, DataConfig(L=2e6, phi=(29.5, -30.0), sigma=0.01))
    np.testing.assert_array_equal(data.phi, [30.0, -30.0])
    np.testing.assert_array_equal(data.c2, c2[[2, 0]])
    data = load_data(aps_file, DataConfig(L=2e6, phi_range=(-40.0, 10.0), sigma=0.01))
    np.testing.assert_array_equal(data.phi, [-30.0, 0.0])
    # Angles compare modulo 360.
    assert select_angles([350.0, 90.0], DataConfig(phi_range=(-20.0, 20.0))).tolist() == [0]
    assert select_angles([350.0, 90.0], DataConfig(phi=(-10.0,))).tolist() == [0]
    with pytest.raises(
        ValueError, match=r"phi = 45 .* no angle within 1 degrees; available: \[-30, 0, 30\]"
    ):
        load_data(aps_file, DataConfig(L=2e6, phi=(45.0,)))
    with pytest.raises(ValueError, match=r"pick the angle 0 twice"):
        load_data(aps_file, DataConfig(L=2e6, phi=(0.0, 0.5)))
    with pytest.raises(ValueError, match=r"keeps no angle"):
        load_data(aps_file, DataConfig(L=2e6, phi_range=(40.0, 80.0)))


def test_dt_and_L_for_aps_files(tmp_path, c2, aps_file):
    data = load_data(aps_file, DataConfig(L=2e6, dt=0.5, sigma=0.01))
    np.testing.assert_allclose(data.t, 0.5 * np.arange(N_T))
    with pytest.raises(ValueError, match=r"L \(Angstrom\) is required"):
        load_data(aps_file)
    bare = write_aps_hdf5(tmp_path / "bare.h5", c2, q=0.0054, phi=PHI)
    with pytest.raises(ValueError, match=r"stores no frame time .*give dt"):
        load_data(bare, DataConfig(L=2e6))


def test_npz_with_config(tmp_path, data, rng):
    sigma = rng.uniform(0.01, 0.02, data.c2.shape)
    path = write_npz(tmp_path / "d.npz", dataclasses.replace(data, sigma=sigma))
    same = load_data(path)
    np.testing.assert_array_equal(same.c2, data.c2)
    np.testing.assert_array_equal(same.sigma, sigma)
    config = DataConfig(L=1e6, start_frame=2, end_frame=6, phi=(0.0,), q=0.0055)
    cut = load_data(path, config)
    np.testing.assert_array_equal(cut.c2, data.c2[1:2, 1:6, 1:6])
    np.testing.assert_array_equal(cut.sigma, sigma[1:2, 1:6, 1:6])
    np.testing.assert_allclose(cut.t, 0.1 * np.arange(5), atol=1e-15)
    assert float(cut.L) == 1e6
    with pytest.raises(ValueError, match=r"does not match the q of"):
        load_data(path, DataConfig(q=0.01))
    with pytest.raises(ValueError, match=r"cannot tell the format"):
        load_data(tmp_path / "d.csv")


def test_estimated_sigma_is_used_and_zero_noise_is_an_error(tmp_path):
    t = 0.1 * np.arange(30)
    clean = np.ones((2, 30, 30)) + 0.3 * np.exp(-np.abs(t[:, None] - t[None, :]))
    path = write_aps_hdf5(tmp_path / "clean.h5", clean, q=0.0054, phi=[0.0, 90.0], frame_time=0.1)
    with pytest.raises(ValueError, match=r"estimated noise sigma is 0 at phi = 0 degrees"):
        load_data(path, DataConfig(L=2e6))


# ----------------------------------------------------------------------------- noise


def test_estimate_sigma_recovers_the_noise_of_synthetic_data():
    t = 0.1 * np.arange(160)
    phi = np.array([-30.0, 0.0, 30.0, 90.0])
    for noise in (0.01, 0.003):
        c2 = synthetic_c2(jax.random.key(7), example.TRUTH, t, phi, 0.0054, 2e6, 0.3, 1.0, noise)
        sigma = estimate_sigma(c2)
        assert sigma.shape == (4,)
        np.testing.assert_allclose(sigma, noise, rtol=0.05)


def test_estimate_sigma_refuses_bad_input():
    with pytest.raises(ValueError, match=r"n_t >= 4"):
        estimate_sigma(np.ones((1, 3, 3)))
    with pytest.raises(ValueError, match=r"shape"):
        estimate_sigma(np.ones((3, 3)))


# ----------------------------------------------------------------------------- example


def test_the_packaged_example_loads():
    config = load_data_config(example_path("laminar_flow_example.toml"))
    assert config.file == str(example_path("laminar_flow_example.h5"))
    data = load_data(config.file, config)
    assert data.c2.shape == (3, example.N_FRAMES, example.N_FRAMES)
    np.testing.assert_array_equal(data.phi, example.PHI)
    assert float(data.q) == example.Q and float(data.L) == example.L
    np.testing.assert_allclose(data.dt, example.DT)
    np.testing.assert_allclose(np.asarray(data.sigma)[:, 0, 0], example.NOISE, rtol=0.1)
    with h5py.File(config.file, "r") as f:
        truth = dict(f.attrs)
    assert {k: truth[k] for k in example.TRUTH} == example.TRUTH
    assert truth["noise"] == example.NOISE and truth["mode"] == "laminar_flow"


def test_the_example_file_is_what_make_example_writes(tmp_path):
    ring = read_aps_hdf5(example_path("laminar_flow_example.h5"))
    np.testing.assert_allclose(ring.c2, example.make_c2(), rtol=1e-12, atol=0)
    assert ring.frame_time == example.DT


def test_example_path_refuses_unknown_names():
    assert set(EXAMPLES) == {
        "laminar_flow_example.h5", "laminar_flow_example.toml",
        "two_component_example.h5", "two_component_example.toml",
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"unknown example 'x.h5'"):
        example_path("x.h5")
