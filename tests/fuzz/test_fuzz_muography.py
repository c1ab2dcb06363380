"""Bad inputs to muon tomography: muon generation, volumes, detectors, the X0 pipeline and
the study config (issue 25's silent NaN maps and broadcast errors)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from diffdesign import muography as mu
from diffdesign.muography.volume import Volume
from experiments.muography._studies import MuographyStudyConfig
from tests.fuzz._harness import Case, finite_everywhere, handled, parametrize, raises, run_case

NAN, INF = float("nan"), float("inf")
KEY = jax.random.key(0)


def _volume():
    return mu.uniform_volume("iron", (2, 2, 2), size=0.1, lower=(0.0, 0.0, 0.3))


def _muons(n=50, **changes):
    muons = mu.generate_muons(KEY, n, footprint=((0.0, 0.2), (0.0, 0.2)), z=0.6, momentum=5e9)
    return muons._replace(**{k: jnp.asarray(v) for k, v in changes.items()})


def _detector(**above):
    volume = _volume()
    detector = mu.default_detector(volume, n_per_side=2)
    panels = detector.above
    for field, value in above.items():
        panels = dataclasses.replace(panels, **{field: jnp.asarray(value)})
    return dataclasses.replace(detector, above=panels)


def _predict(detector=None, n=50, p=5e9):
    volume = _volume()
    passage = mu.propagate(KEY, _muons(n), volume)
    return mu.predict_x0(KEY, detector or _detector(), passage, jnp.full(n, p), volume,
                         estimator=mu.Poca())  # fmt: skip


CASES = [
    Case("generate n=-5", lambda: mu.generate_muons(KEY, -5), raises(r"n \(the number of muons\) must be an integer >= 1; got -5")),
    Case("generate n=0", lambda: mu.generate_muons(KEY, 0), raises(r"n \(the number of muons\).*got 0")),
    Case("generate n=2.5", lambda: mu.generate_muons(KEY, 2.5), raises(r"n \(the number of muons\).*got 2.5")),
    Case("generate momentum inf", lambda: mu.generate_muons(KEY, 10, momentum=INF), raises(r"momentum must be finite and > 0 eV/c; got inf")),
    Case("generate momentum nan", lambda: mu.generate_muons(KEY, 10, momentum=NAN), raises(r"momentum must be finite and > 0")),
    Case("generate momentum 0", lambda: mu.generate_muons(KEY, 10, momentum=0.0), raises(r"momentum must be finite and > 0")),
    Case("generate z nan", lambda: mu.generate_muons(KEY, 10, z=NAN), raises(r"z \(the height of the muons' plane\) must be finite")),
    Case("generate footprint nan", lambda: mu.generate_muons(KEY, 10, footprint=((0.0, NAN), (0.0, 1.0))), raises(r"footprint must be")),
    Case("generate energy high inf", lambda: mu.generate_muons(KEY, 10, energy_range=(1e9, INF)), raises(r"energy_range must satisfy")),
    Case("generate zenith 90 deg", lambda: mu.generate_muons(KEY, 10, max_zenith=np.pi / 2), raises(r"max_zenith must lie in \(0, pi/2\)")),
    Case("volume x0 = 0", lambda: Volume(jnp.zeros((2, 2, 2)), 0.1, (0.0, 0.0, 0.3)), raises(r"Volume.x0 must be finite and > 0 m in every voxel")),
    Case("volume x0 nan", lambda: Volume(jnp.full((2, 2, 2), NAN), 0.1, (0.0, 0.0, 0.3)), raises(r"Volume.x0 must be finite")),
    Case("volume size 0", lambda: Volume(jnp.ones((2, 2, 2)), 0.0, (0.0, 0.0, 0.3)), raises(r"Volume.size .* > 0 m; got 0.0")),
    Case("volume lower nan", lambda: Volume(jnp.ones((2, 2, 2)), 0.1, (0.0, NAN, 0.3)), raises(r"Volume.lower must be three finite")),
    Case("volume 2-d", lambda: Volume(jnp.ones((2, 2)), 0.1, (0.0, 0.0, 0.3)), raises(r"Volume.x0 must have shape")),
    Case("make_volume negative", lambda: mu.make_volume(-np.ones((2, 2, 2))), raises(r"x0 must be finite and > 0")),
    Case("propagate p inf", lambda: mu.propagate(KEY, _muons(p=jnp.full(50, INF)), _volume()), raises(r"muons.p must be finite and > 0 eV/c")),
    Case("propagate p negative", lambda: mu.propagate(KEY, _muons(p=jnp.full(50, -1.0)), _volume()), raises(r"muons.p must be finite and > 0")),
    Case("propagate tx nan", lambda: mu.propagate(KEY, _muons(tx=jnp.full(50, NAN)), _volume()), raises(r"muons.tx must be finite")),
    Case("propagate no muons", lambda: mu.propagate(KEY, _muons()._replace(**{f: jnp.zeros(0) for f in ("x", "y", "tx", "ty", "p")}), _volume()), raises(r"at least one muon")),
    Case("predict negative span", lambda: _predict(_detector(span=-np.ones((2, 2)))), raises(r"detector.above.span must be > 0 m")),
    Case("predict nan panel z", lambda: _predict(_detector(z=np.array([NAN, 0.95]))), raises(r"detector.above.z must be finite")),
    Case("predict panel inside volume", lambda: _predict(_detector(z=np.array([0.5, 0.95]))), raises(r"detector.above.z\[0\] = 0.5 m overlaps the passive volume")),
    Case("predict efficiency 1.5", lambda: _predict(_detector(efficiency=np.full(2, 1.5))), raises(r"detector.above.efficiency must lie in \(0, 1\]")),
    Case("predict sigma 0", lambda: _predict(_detector(sigma=np.zeros(2))), raises(r"detector.above.sigma must be > 0 m")),
    Case("predict one panel", lambda: _predict(dataclasses.replace(_detector(), above=mu.make_panels([0.95]))), raises(r"detector.above needs at least 2 panels")),
    Case("predict p inf", lambda: _predict(p=INF), raises(r"p \(the momenta assumed, eV/c\) must be finite and > 0")),
    Case("predict a good detector", lambda: _predict(), handled(lambda x0: finite_everywhere(x0) and x0.shape == (2, 2, 2))),
    Case("study momentum nan", lambda: MuographyStudyConfig(momentum=NAN), raises(r"momentum must be finite and >= 0 eV/c")),
    Case("study momentum -1", lambda: MuographyStudyConfig(momentum=-1.0), raises(r"momentum must be finite and >= 0")),
    Case("study rate nan", lambda: MuographyStudyConfig(rate_xy=NAN), raises(r"rate_xy must be finite and >= 0; got nan")),
    Case("study cost weight inf", lambda: MuographyStudyConfig(cost_weight=INF), raises(r"cost_weight must be finite and >= 0")),
    Case("study budget inf", lambda: MuographyStudyConfig(budgets=(4.0, INF)), raises(r"budgets must be finite and > 0")),
    Case("study budget 0", lambda: MuographyStudyConfig(budgets=(0.0,)), raises(r"budgets must be finite and > 0")),
    Case("study epochs 0", lambda: MuographyStudyConfig(epochs=0), raises(r"epochs must be >= 1; got 0")),
    Case("study estimator", lambda: MuographyStudyConfig(estimator="magic"), raises(r"estimator")),
]  # fmt: skip


@parametrize(CASES)
def test_case(case):
    run_case(case)
