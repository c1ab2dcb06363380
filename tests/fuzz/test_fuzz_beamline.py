"""Bad inputs to the beamline: element and beam constructors, segments, ARES."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diffdesign.beamline import (
    BPM,
    CombinedCorrector,
    CustomTransferMap,
    Dipole,
    Drift,
    HorizontalCorrector,
    ParameterBeam,
    ParticleBeam,
    Quadrupole,
    RBend,
    Screen,
    Segment,
    Sextupole,
    Solenoid,
    VerticalCorrector,
    ares,
)
from diffdesign.beamline.ares import calibration, diagnostics, experiment_design
from tests.fuzz._harness import Case, finite_everywhere, handled, parametrize, raises, run_case

NAN, INF = float("nan"), float("inf")
GOOD_SETTINGS = np.array([10.0, -10.0, 0.0, 10.0, 0.0])


def _segment():
    return Segment([Drift(0.5, name="D1"), Quadrupole(0.2, k1=4.0, name="Q1"), Drift(0.5)])


def _ares(q1=10.0, **kwargs):
    return ares.screen_beam(np.array([q1, -10.0, 0.0, 10.0, 0.0]), **kwargs)


def _calibration_settings(n=4):
    rng = np.random.default_rng(0)
    return rng.uniform(ares.SETTING_LOWER, ares.SETTING_UPPER, (n, 5))


def _measured(n=4, **changes):
    values = {k: np.full(n, 1e-4) for k in ares.OBSERVABLES}
    return values | {k: np.full(n, v) for k, v in changes.items()}


def _offsets_file(tmp, content: bytes | str):
    path = tmp / "offsets.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _files(tmp_path_factory):
    return tmp_path_factory.mktemp("beamline_fuzz")


ELEMENTS = [
    Case("drift length nan", lambda: Drift(NAN), raises(r"length must be finite")),
    Case("drift length inf", lambda: Drift(INF), raises(r"length must be finite")),
    Case(
        "drift length string", lambda: Drift("one metre"), raises(r"length", ValueError, TypeError)
    ),
    Case("drift length None", lambda: Drift(None), raises(r"length", ValueError, TypeError)),
    Case(
        "drift length negative is a backwards drift",
        lambda: Drift(-0.5),
        handled(lambda d: float(d.length) == -0.5),
    ),
    Case("quadrupole negative length", lambda: Quadrupole(-0.1), raises(r"length must lie in \[0")),
    Case("quadrupole k1 nan", lambda: Quadrupole(0.1, k1=NAN), raises(r"k1 must be finite")),
    Case("quadrupole k1 -inf", lambda: Quadrupole(0.1, k1=-INF), raises(r"k1 must be finite")),
    Case(
        "quadrupole misalignment shape",
        lambda: Quadrupole(0.1, misalignment=[0.0, 0.0, 0.0]),
        raises(r"misalignment must have shape \(\.\.\., 2\)"),
    ),
    Case(
        "quadrupole misalignment inf",
        lambda: Quadrupole(0.1, misalignment=[INF, 0.0]),
        raises(r"misalignment must be finite"),
    ),
    Case("quadrupole tilt nan", lambda: Quadrupole(0.1, tilt=NAN), raises(r"tilt must be finite")),
    Case(
        "quadrupole k1 list of strings",
        lambda: Quadrupole(0.1, k1=["a"]),
        raises(r"k1", ValueError, TypeError),
    ),
    Case("sextupole k2 inf", lambda: Sextupole(0.1, k2=INF), raises(r"k2 must be finite")),
    Case("dipole zero length", lambda: Dipole(0.0, angle=0.1), raises(r"length must be > 0")),
    Case(
        "dipole e1 = pi/2",
        lambda: Dipole(1.0, angle=0.1, e1=np.pi / 2),
        raises(r"e1 must lie in \(-pi/2, pi/2\)"),
    ),
    Case(
        "dipole e2 = -pi/2",
        lambda: Dipole(1.0, angle=0.1, e2=-np.pi / 2),
        raises(r"e2 must lie in \(-pi/2, pi/2\)"),
    ),
    Case("dipole e1 = 3", lambda: Dipole(1.0, angle=0.1, e1=3.0), raises(r"e1 must lie in")),
    Case(
        "dipole negative gap",
        lambda: Dipole(1.0, angle=0.1, gap=-0.01),
        raises(r"gap must lie in \[0"),
    ),
    Case(
        "dipole negative fringe integral",
        lambda: Dipole(1.0, angle=0.1, fringe_integral=-0.5),
        raises(r"fringe_integral must lie in \[0"),
    ),
    Case(
        "dipole negative exit fringe integral",
        lambda: Dipole(1.0, angle=0.1, fringe_integral_exit=-0.5),
        raises(r"fringe_integral_exit must lie in \[0"),
    ),
    Case("dipole angle nan", lambda: Dipole(1.0, angle=NAN), raises(r"angle must be finite")),
    Case(
        "dipole replace e1 pi/2",
        lambda: Dipole(1.0, angle=0.1).replace(e1=-np.pi / 2),
        raises(r"e1 must lie in"),
    ),
    Case("rbend e1 pi/2", lambda: RBend(1.0, angle=0.1, e1=np.pi / 2), raises(r"e1 must lie in")),
    Case(
        "dipole batch with one bad e2",
        lambda: Dipole(1.0, angle=0.1, e2=np.array([0.0, 0.1, 2.0])),
        raises(r"e2 must lie in"),
    ),
    Case(
        "horizontal corrector angle nan",
        lambda: HorizontalCorrector(0.02, angle=NAN),
        raises(r"angle must be finite"),
    ),
    Case(
        "vertical corrector negative length",
        lambda: VerticalCorrector(-0.02),
        raises(r"length must lie in"),
    ),
    Case(
        "combined corrector angle inf",
        lambda: CombinedCorrector(0.0, vertical_angle=INF),
        raises(r"vertical_angle must be finite"),
    ),
    Case("solenoid k inf", lambda: Solenoid(0.3, k=INF), raises(r"\bk must be finite")),
    Case(
        "custom map 6x6",
        lambda: CustomTransferMap(np.eye(6)),
        raises(r"transfer_map_array must have shape"),
    ),
    Case(
        "custom map nan",
        lambda: CustomTransferMap(np.full((7, 7), NAN)),
        raises(r"transfer_map_array must be finite"),
    ),
    Case("screen zero resolution", lambda: Screen(resolution=(0, 10)), raises(r"resolution")),
    Case(
        "screen binning not dividing",
        lambda: Screen(resolution=(10, 10), binning=3),
        raises(r"binning"),
    ),
    Case(
        "screen negative pixel size",
        lambda: Screen(pixel_size=(-1e-6, 1e-6)),
        raises(r"pixel_size must lie in \[0"),
    ),
    Case(
        "screen pixel size shape",
        lambda: Screen(pixel_size=(1e-6, 1e-6, 1e-6)),
        raises(r"pixel_size .*shape"),
    ),
    Case(
        "bpm misalignment nan",
        lambda: BPM(misalignment=[NAN, 0.0]),
        raises(r"misalignment must be finite"),
    ),
]

BEAMS = [
    Case(
        "beam negative sigma",
        lambda: ParameterBeam.from_parameters(sigma_x=-1e-4),
        raises(r"sigma_x must lie in \[0"),
    ),
    Case(
        "beam energy below rest mass",
        lambda: ParameterBeam.from_parameters(energy=1e5),
        raises(r"energy - rest energy"),
    ),
    Case(
        "beam energy nan",
        lambda: ParameterBeam.from_parameters(energy=NAN),
        raises(r"energy .*finite"),
    ),
    Case(
        "beam energy inf",
        lambda: ParameterBeam.from_parameters(energy=INF),
        raises(r"energy .*finite"),
    ),
    Case(
        "beam covariance not positive definite",
        lambda: ParameterBeam.from_parameters(sigma_x=1e-4, sigma_px=1e-5, cov_xpx=1e-8),
        raises(r"covariance must be positive definite"),
    ),
    Case(
        "beam unknown parameter",
        lambda: ParameterBeam.from_parameters(sigma_z=1e-3),
        raises(r"unknown beam parameter.*sigma_z", TypeError),
    ),
    Case(
        "beam total charge nan",
        lambda: ParameterBeam.from_parameters(total_charge=NAN),
        raises(r"total_charge must be finite"),
    ),
    Case(
        "particle beam s nan",
        lambda: ParticleBeam(np.ones((4, 7)), 1e8, s=NAN),
        raises(r"\bs must be finite"),
    ),
    Case("beam s inf", lambda: ParameterBeam.from_parameters(s=INF), raises(r"\bs must be finite")),
    Case(
        "twiss beta zero",
        lambda: ParameterBeam.from_twiss(beta_x=0.0),
        raises(r"beta_x must be > 0"),
    ),
    Case(
        "twiss negative emittance",
        lambda: ParameterBeam.from_twiss(emittance_y=-1e-9),
        raises(r"emittance_y must lie in \[0"),
    ),
    Case(
        "twiss alpha nan",
        lambda: ParameterBeam.from_twiss(alpha_x=NAN),
        raises(r"alpha_x must be finite"),
    ),
    Case(
        "twiss sigma_p negative",
        lambda: ParameterBeam.from_twiss(sigma_p=-1e-3),
        raises(r"sigma_p must lie in \[0"),
    ),
    Case(
        "parameter beam mu shape",
        lambda: ParameterBeam(np.zeros(6), np.eye(7), 1e8),
        raises(r"mu must have shape"),
    ),
    Case(
        "parameter beam cov nan",
        lambda: ParameterBeam(np.zeros(7), np.full((7, 7), NAN), 1e8),
        raises(r"cov must be finite"),
    ),
    Case(
        "particle beam one particle",
        lambda: ParticleBeam(np.ones((1, 7)), 1e8),
        raises(r"particles must have shape"),
    ),
    Case(
        "particle beam last column",
        lambda: ParticleBeam(np.zeros((4, 7)), 1e8),
        raises(r"particles\[\.\.\., 6\] must be 1"),
    ),
    Case(
        "particle beam survival 2",
        lambda: ParticleBeam(np.ones((4, 7)), 1e8, survival_probabilities=np.full(4, 2.0)),
        raises(r"survival_probabilities must lie in \[0.0, 1.0\]"),
    ),
    Case(
        "particle beam charges shape",
        lambda: ParticleBeam(np.ones((4, 7)), 1e8, particle_charges=np.ones(3)),
        raises(r"particle_charges must have shape"),
    ),
    Case(
        "particle beam too few particles",
        lambda: ParticleBeam.from_parameters(3, jax.random.key(0)),
        raises(r"num_particles must be an integer >= 7"),
    ),
    Case(
        "particle beam fractional count",
        lambda: ParticleBeam.from_parameters(10.5, jax.random.key(0)),
        raises(r"num_particles must be an integer"),
    ),
    Case(
        "particle beam total charge inf",
        lambda: ParticleBeam.from_parameters(8, jax.random.key(0), total_charge=INF),
        raises(r"total_charge must be finite"),
    ),
]

SEGMENTS = [
    Case(
        "segment of numbers",
        lambda: Segment([1.0, 2.0]),
        raises(r"elements\[0\] must be a diffdesign.beamline Element", TypeError),
    ),
    Case(
        "segment second_order out of range",
        lambda: Segment([Drift(1.0)], second_order=[3]),
        raises(r"second_order holds element positions"),
    ),
    Case(
        "with_settings unknown element",
        lambda: _segment().with_settings({"Q9.k1": 1.0}),
        raises(r"no element named 'Q9'", KeyError),
    ),
    Case(
        "with_settings unknown field",
        lambda: _segment().with_settings({"Q1.k7": 1.0}),
        raises(r"no setting 'k7'"),
    ),
    Case(
        "with_settings no dot",
        lambda: _segment().with_settings({"Q1": 1.0}),
        raises(r"'ELEMENT.field'"),
    ),
    Case(
        "with_settings k1 nan",
        lambda: _segment().with_settings({"Q1.k1": NAN}),
        raises(r"k1 must be finite"),
    ),
    Case(
        "with_settings negative quadrupole length",
        lambda: _segment().with_settings({"Q1.length": -1.0}),
        raises(r"length must lie in"),
    ),
    Case(
        "with_settings not a mapping",
        lambda: _segment().with_settings([("Q1.k1", 1.0)]),
        raises(r"settings", TypeError, ValueError),
    ),
    Case("split zero resolution", lambda: _segment().split(0.0), raises(r"resolution must be > 0")),
    Case(
        "split nan resolution", lambda: _segment().split(NAN), raises(r"resolution must be finite")
    ),
    Case(
        "subsegment unknown",
        lambda: _segment().subsegment("Q7"),
        raises(r"no element named 'Q7'", KeyError),
    ),
    Case("track a non-beam", lambda: _segment().track(np.zeros(7)), raises(r"incoming", TypeError)),
]

ARES = [
    Case(
        "ares q1 = 1e6 (magnets allow 30)",
        lambda: _ares(1e6),
        raises(r"AREAMQZM1.k1.*\[-30.0, 30.0\] 1/m\^2.*allow_outside_ranges"),
    ),
    Case("ares q1 = -31", lambda: _ares(-31.0), raises(r"AREAMQZM1.k1.*-31")),
    Case(
        "ares steerer 1 rad",
        lambda: ares.screen_beam(np.array([0, 0, 1.0, 0, 0])),
        raises(r"AREAMCVM1.angle.*rad"),
    ),
    Case(
        "ares batch with one setting out of range",
        lambda: ares.screen_beam(np.array([GOOD_SETTINGS, [0, 0, 0, 0, 0.01]])),
        raises(r"AREAMCHM1.angle"),
    ),
    Case(
        "ares q1 = 40 allowed explicitly",
        lambda: _ares(40.0, allow_outside_ranges=True),
        handled(lambda b: finite_everywhere(b) and abs(float(b["mu_y"])) < 1.0),
    ),
    Case(
        "ares settings shape (4,)",
        lambda: ares.screen_beam(np.zeros(4)),
        raises(r"settings must have shape \(\.\.\., 5\)"),
    ),
    Case(
        "ares settings nan",
        lambda: ares.screen_beam(np.array([NAN, 0, 0, 0, 0])),
        raises(r"settings must be finite"),
    ),
    Case(
        "ares shapes do not broadcast",
        lambda: ares.screen_beam(np.zeros((4, 5)), np.zeros((3, 3, 2))),
        raises(r"do not broadcast: settings \(4,\), misalignments \(3,\)"),
    ),
    Case(
        "ares misalignments inf",
        lambda: ares.screen_beam(GOOD_SETTINGS, np.full((3, 2), INF)),
        raises(r"misalignments must be finite"),
    ),
    Case(
        "ares segment settings shape",
        lambda: ares.segment(np.zeros(3)),
        raises(r"settings must have shape"),
    ),
    Case(
        "ares segment q3 out of range",
        lambda: ares.segment(np.array([0, 0, 0, 99.0, 0])),
        raises(r"AREAMQZM3.k1"),
    ),
    Case(
        "ares incoming negative sigma",
        lambda: ares.incoming_beam(sigma_y=-1e-4),
        raises(r"sigma_y must lie in"),
    ),
    Case(
        "ares mae unknown target",
        lambda: ares.mae({}, {"mu_z": 0.0}),
        raises(r"target keys must be among"),
    ),
    Case(
        "ares mae missing observable",
        lambda: ares.mae({"mu_x": 0.0}),
        raises(r"sigma_x", ValueError, KeyError),
    ),
    Case(
        "calibrate negative sigma measurement",
        lambda: calibration.calibrate_offsets(_calibration_settings(), _measured(sigma_x=-1e-4)),
        raises(r"measurements\['sigma_x'\] is a beam size \(m, >= 0\); got -0.0001 m at row 0"),
    ),
    Case(
        "calibration problem with a noisy size just below 0",
        lambda: ares.CalibrationProblem(_calibration_settings(), _measured(sigma_x=-2e-5)),
        handled(lambda p: float(p.measurements["sigma_x"][0]) == -2e-5, "a noisy reading"),
    ),
    Case(
        "calibration problem with a size far below 0",
        lambda: ares.CalibrationProblem(_calibration_settings(), _measured(sigma_y=-1e-3)),
        raises(r"measurements\['sigma_y'\] is a beam size"),
    ),
    Case(
        "calibrate missing observable",
        lambda: calibration.calibrate_offsets(
            _calibration_settings(), {"mu_x": np.zeros(4), "mu_y": np.zeros(4)}
        ),
        raises(r"measurements lack \['sigma_x', 'sigma_y'\]"),
    ),
    Case(
        "calibrate two settings",
        lambda: calibration.calibrate_offsets(_calibration_settings(2), _measured(2)),
        raises(r"settings must have shape \(n, 5\)"),
    ),
    Case(
        "calibrate settings out of range",
        lambda: calibration.calibrate_offsets(_calibration_settings() * 2, _measured()),
        raises(r"settings\[:, \d\]"),
    ),
    Case(
        "calibrate measurement inf",
        lambda: calibration.calibrate_offsets(_calibration_settings(), _measured(mu_y=INF)),
        raises(r"measurements\['mu_y'\] must be"),
    ),
    Case(
        "calibrate measurement shape",
        lambda: calibration.calibrate_offsets(
            _calibration_settings(), _measured() | {"mu_x": np.zeros(5)}
        ),
        raises(r"measurements\['mu_x'\] must have shape \(4,\)"),
    ),
    Case(
        "calibrate zero noise",
        lambda: calibration.calibrate_offsets(
            _calibration_settings(), _measured(), noise={"mu_x": 0.0}
        ),
        raises(r"noise\['mu_x'\]"),
    ),
    Case(
        "calibrate unknown noise key",
        lambda: calibration.calibrate_offsets(
            _calibration_settings(), _measured(), noise={"mu": 1e-5}
        ),
        raises(r"noise keys must be among"),
    ),
    Case(
        "calibrate negative bound",
        lambda: calibration.calibrate_offsets(_calibration_settings(), _measured(), bound=-1e-3),
        raises(r"bound must"),
    ),
    Case(
        "calibrate method as string",
        lambda: calibration.calibrate_offsets(_calibration_settings(), _measured(), method="lm"),
        raises(r"method must be a CalibrationMethod", TypeError),
    ),
    Case(
        "random settings n = 0",
        lambda: experiment_design.random_settings(0, jax.random.key(0)),
        raises(r"\bn \(the number of settings\) must be an integer >= 1; got 0"),
    ),
    Case(
        "screen placement beyond its drift",
        lambda: diagnostics.ScreenPlacement("S", diagnostics.LAST_DRIFT, 5.0, 1e-5),
        raises(r"position must lie in"),
    ),
    Case(
        "screen placement unknown drift",
        lambda: diagnostics.ScreenPlacement("S", "nowhere", 0.1, 1e-5),
        raises(r"drift must be one of"),
    ),
    Case(
        "today screen negative resolution",
        lambda: diagnostics.today_screen(-1e-5),
        raises(r"resolution must lie in \[0"),
    ),
]


@parametrize(ELEMENTS + BEAMS + SEGMENTS + ARES)
def test_case(case):
    run_case(case)


OFFSET_FILES = {
    "binary": (b"\x89PNG\r\n\x1a\n\xff\xfe\x00", r"offsets\.json.*(UTF-8|JSON)"),
    "empty": (b"", r"offsets\.json"),
    "truncated": (b'{"offsets_m": [[0.0, 0.0], [0.0', r"offsets\.json"),
    "a list": (b"[1, 2, 3]", r"offsets\.json has no 'offsets_m'"),
    "wrong shape": (json.dumps({"offsets_m": [0.0, 0.0]}), r"'offsets_m' .*shape \(3, 2\)"),
    "one metre": (
        json.dumps({"offsets_m": [[1.0, 0], [0, 0], [0, 0]]}),
        r"'offsets_m' .*must lie in \[-0.005, 0.005\] m",
    ),
    "strings": (json.dumps({"offsets_m": [["a", 0], [0, 0], [0, 0]]}), r"'offsets_m'"),
    "negative std": (
        json.dumps({"offsets_m": [[0, 0]] * 3, "std_m": [[-1, 0]] * 3}),
        r"'std_m' .*>= 0",
    ),
}


@pytest.mark.parametrize("kind", list(OFFSET_FILES), ids=list(OFFSET_FILES))
def test_offsets_file(kind, tmp_path):
    content, pattern = OFFSET_FILES[kind]
    path = _offsets_file(tmp_path, content)
    run_case(Case(f"load_offsets {kind}", lambda: calibration.load_offsets(path), raises(pattern)))


def test_load_offsets_missing(tmp_path):
    missing = tmp_path / "nope.json"
    run_case(
        Case(
            "load_offsets missing file",
            lambda: calibration.load_offsets(missing),
            raises(r"nope\.json", ValueError, FileNotFoundError),
        )
    )


# --------------------------------------------------------------- property-based: constructors

_ANY = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([NAN, INF, -INF, -1e300, 1e300, -0.0, np.pi / 2, -np.pi / 2]),
)

#: constructor, field, whether a finite value is allowed (None: any finite value).
_FIELDS = [
    (lambda v: Quadrupole(0.1, k1=v), "k1", lambda v: True),
    (lambda v: Quadrupole(v), "length", lambda v: v >= 0),
    (lambda v: Drift(v), "length", lambda v: True),
    (lambda v: Dipole(1.0, angle=0.1, e1=v), "e1", lambda v: abs(v) < np.pi / 2),
    (lambda v: Dipole(1.0, angle=0.1, gap=v), "gap", lambda v: v >= 0),
    (lambda v: Dipole(1.0, angle=0.1, fringe_integral=v), "fringe_integral", lambda v: v >= 0),
    (lambda v: Dipole(v, angle=0.1), "length", lambda v: v > 0),
    (lambda v: Solenoid(0.3, k=v), "k", lambda v: True),
    (
        lambda v: ParameterBeam.from_parameters(sigma_px=v),
        "sigma_px",
        lambda v: v > 0 and np.isfinite(v * v) and v * v > 0,  # its variance representable
    ),
]


@settings(max_examples=25, deadline=None)
@given(which=st.integers(0, len(_FIELDS) - 1), value=_ANY)
def test_constructor_values(which, value):
    """Every value into a constructor field gives either an element holding it or an error
    naming the field (never NaN stored, never another exception)."""
    build, field, allowed = _FIELDS[which]
    if np.isfinite(value) and allowed(value):
        expect = handled(lambda built: finite_everywhere(built), f"{field}={value}")
    else:
        expect = raises(rf"\b{field}\b")
    run_case(Case(f"{field} = {value!r}", lambda: build(value), expect), record=False)


@settings(max_examples=15, deadline=None)
@given(q=st.floats(-1e4, 1e4), i=st.integers(0, 4))
def test_ares_setting_ranges(q, i):
    """Settings inside the magnet ranges track to finite beams; outside, the error names the
    magnet and its range."""
    settings_ = GOOD_SETTINGS.copy()
    settings_[i] = q * 1e-5 if i in (2, 4) else q
    inside = ares.SETTING_LOWER[i] <= settings_[i] <= ares.SETTING_UPPER[i]
    expect = handled(finite_everywhere) if inside else raises(rf"{ares.SETTING_NAMES[i]}")
    run_case(
        Case(f"ares {i} = {settings_[i]}", lambda: ares.screen_beam(settings_), expect),
        record=False,
    )
