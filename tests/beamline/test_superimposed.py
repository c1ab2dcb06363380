"""Superimposed elements (Cheetah's ``Superimposed``): a zero-length element at the centre of
a uniform one, converted from Cheetah objects and files and built with ``superimpose``."""

from __future__ import annotations

import cheetah
import jax
import numpy as np
import pytest
import torch
from cheetah import latticejson

import diffdesign.beamline as bl
from diffdesign.beamline.convert import from_cheetah, to_cheetah
from diffdesign.beamline.lattice_json import read_lattice_json
from tests.beamline.cheetah_helpers import assert_covariance_close, assert_vector_close


def T(x):
    return torch.tensor(x, dtype=torch.float64)


def _theirs():
    quadrupole = cheetah.Quadrupole(
        T(0.3), T(4.2), misalignment=T([2e-4, -1e-4]), name="Q1", dtype=torch.float64
    )
    return cheetah.Segment(
        [
            cheetah.Drift(T(0.7), name="D1"),
            cheetah.Superimposed(quadrupole, cheetah.BPM(is_active=True, name="B1", dtype=torch.float64), name="SUP"),
            cheetah.Superimposed(cheetah.Drift(T(0.4), name="D2"), cheetah.Marker(name="M"),
                                 name="SUP2"),
        ],
        name="line",
    )  # fmt: skip


def test_converted_superimposed_tracks_as_cheetah():
    theirs = _theirs()
    ours = from_cheetah(theirs)
    assert list(ours.names) == ["D1", "Q1", "B1", "Q1", "D2", "M", "D2"]
    np.testing.assert_allclose([e.length for e in ours.elements],
                               [0.7, 0.15, 0.0, 0.15, 0.2, 0.0, 0.2], rtol=1e-15)  # fmt: skip
    beam = bl.ParameterBeam.from_parameters(mu_x=1e-4, sigma_x=1e-4, sigma_px=2e-5, energy=1e8)
    out = ours.track(beam)
    their_out = theirs.track(to_cheetah(beam))
    assert_vector_close(out.mu[:6], their_out.mu.numpy()[:6], rtol=1e-12)
    assert_covariance_close(out.cov, their_out.cov.numpy(), rtol=1e-12)
    particles = bl.ParticleBeam.from_parameters(1_000, jax.random.key(0), sigma_x=1e-4, energy=1e8)
    their_particles = theirs.track(to_cheetah(particles)).particles.numpy()
    assert_vector_close(ours.track(particles).particles, their_particles, rtol=1e-12)
    # the BPM reads the beam at the quadrupole's centre, as Cheetah's (its last track)
    theirs.track(to_cheetah(beam))
    their_bpm = theirs.elements[1]._segment.elements[1]
    np.testing.assert_allclose(ours.readings(beam)["B1"], their_bpm.reading.numpy(), rtol=1e-12)


def test_cheetah_file_with_superimposed_reads_as_the_segment(tmp_path):
    theirs = _theirs()
    latticejson.save_cheetah_model(theirs, str(tmp_path / "line.json"))
    assert read_lattice_json(tmp_path / "line.json").elements == from_cheetah(theirs).elements


def test_halves_share_the_base_name_and_compose_to_it():
    quadrupole = bl.Quadrupole(0.3, 4.2, misalignment=(2e-4, 0.0), name="Q1")
    segment = bl.Segment([*bl.superimpose(quadrupole, bl.BPM(name="B"))])
    np.testing.assert_allclose(segment.transfer_map(1e8), quadrupole.transfer_map(1e8),
                               rtol=1e-14, atol=1e-18)  # fmt: skip
    changed = segment.with_settings({"Q1.k1": -3.0})
    assert [e.k1 for e in changed.elements if isinstance(e, bl.Quadrupole)] == [-3.0, -3.0]
    np.testing.assert_allclose(changed.transfer_map(1e8), quadrupole.replace(k1=-3.0).transfer_map(1e8),
                               rtol=1e-14, atol=1e-18)  # fmt: skip


def test_bases_that_do_not_halve_and_long_elements_are_refused(tmp_path):
    dipole = bl.Dipole(0.5, angle=0.1, name="B")
    with pytest.raises(TypeError, match=r"cannot superimpose 'M' on 'B' \(Dipole\)"):
        bl.superimpose(dipole, bl.Marker("M"))
    with pytest.raises(ValueError, match="superimposed element 'Q2' must have zero length"):
        bl.superimpose(bl.Drift(1.0), bl.Quadrupole(0.1, name="Q2"))
    # Cheetah cannot split a dipole either (its split keeps it whole): a file names the entry
    document = (
        '{"version": "cheetah-0.8", "title": "t", "info": "", "root": "line",'
        ' "elements": {"B": ["Dipole", {"length": 0.5, "angle": 0.1}],'
        ' "M": ["Marker", {}], "S": ["Superimposed", {"base_element": "B",'
        ' "superimposed_element": "M"}]}, "lattices": {"line": ["S"]}}'
    )
    (tmp_path / "bad.json").write_text(document)
    with pytest.raises(
        ValueError, match=r"bad.json: element 'S' \(Superimposed\): cannot superimpose"
    ):
        read_lattice_json(tmp_path / "bad.json")
    (tmp_path / "missing.json").write_text(
        document.replace('"base_element": "B"', '"base_element": "X"')
    )
    with pytest.raises(
        ValueError, match=r"element 'S' \(Superimposed\): base_element must name an element"
    ):
        read_lattice_json(tmp_path / "missing.json")


def test_a_drift_kick_drift_base_keeps_its_tracking(rng):
    """Cheetah's split keeps the base's tracking method and steps: so do the halves here."""
    quadrupole = cheetah.Quadrupole(T(0.3), T(9.0), num_steps=2, tracking_method="drift_kick_drift",
                                    name="Q1")  # fmt: skip
    theirs = cheetah.Segment([cheetah.Superimposed(quadrupole, cheetah.Marker(name="M"))])
    ours = from_cheetah(theirs)
    assert [type(e).__name__ for e in ours.elements] == [
        "DriftKickDrift",
        "Marker",
        "DriftKickDrift",
    ]
    assert ours.elements[0].num_steps == 2
    particles = np.zeros((50, 7))
    particles[:, :4] = rng.normal(0.0, 1e-3, (50, 4))
    particles[:, 5] = rng.normal(0.0, 1e-2, 50)
    particles[:, 6] = 1.0
    out = ours.track(bl.ParticleBeam(particles, 1e8)).particles
    their_out = theirs.track(cheetah.ParticleBeam(T(particles), T(1e8))).particles.numpy()
    assert_vector_close(np.asarray(out)[:, :4], their_out[:, :4], rtol=1e-12)


@pytest.mark.parametrize(
    ("elements", "match"),
    [
        ({"S": ["Superimposed", {"base_element": "S", "superimposed_element": "M"}],
          "M": ["Marker", {}]}, r"element 'S' contains itself"),
        ({"S": ["Superimposed", {"base_element": "T", "superimposed_element": "M"}],
          "T": ["Superimposed", {"base_element": "D", "superimposed_element": "M"}],
          "D": ["Drift", {"length": 1.0}], "M": ["Marker", {}]},
         r"element 'S' \(Superimposed\): base_element must be one element; got a Superimposed"),
        ({"S": ["Quadrupole", {"length": 0.1, "num_steps": 2.7,
                               "tracking_method": "drift_kick_drift"}]},
         r"element 'S' \(Quadrupole\): num_steps must be an integer >= 1; got 2.7"),
        ({"S": ["SpaceChargeKick", {"grid_shape": [8, 8, 8]}]},
         r"element 'S' \(SpaceChargeKick\): effect_length is required"),
    ],
)  # fmt: skip
def test_malformed_entries_are_named(tmp_path, elements, match):
    import json

    document = {"version": "cheetah-0.8", "title": "t", "info": "", "root": "line",
                "elements": elements, "lattices": {"line": ["S"]}}  # fmt: skip
    (tmp_path / "bad.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match=match):
        read_lattice_json(tmp_path / "bad.json")
