"""diffdesign vs Cheetah on the ARES experimental area, side by side in one process.

    python benchmarks/beamline_vs_cheetah.py [--out benchmarks/results/cpu/beamline_vs_cheetah.json]

Work measured (both float64 on the CPU unless JAX finds an accelerator):
  (a) one ParameterBeam track: settings -> screen beam (segment built inside, as Cheetah's
      peer script does; Cheetah's track of a prebuilt segment is reported too);
  (b) 1,000 and 100,000 settings in one batch;
  (c) gradient of a 15-setting loss w.r.t. the 6 quadrupole misalignments;
  (d) a 100,000-particle ParticleBeam through a prebuilt segment.
Compile time (first call minus the steady-state median) and steady-state medians are
reported separately; ratio = Cheetah median / diffdesign median.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import cheetah
import jax
import jax.numpy as jnp
import numpy as np
import torch
from _timing import timed  # benchmarks/_timing.py (scripts run from their folder)

import diffdesign
from diffdesign.beamline import ares
from diffdesign.beamline.convert import from_cheetah_beam, to_cheetah

torch.set_default_dtype(torch.float64)


def ready(fn):
    return lambda: jax.block_until_ready(fn())


def cheetah_segment(settings: np.ndarray, misalignments: np.ndarray):
    """The ARES segment without its screen, exactly as the peer script tracks it."""
    segment = ares.segment(settings, misalignments).subsegment(end="Drift_AREAMCHM1")
    return to_cheetah(segment)


def run(reps: int, sizes: tuple[int, ...], particles: int) -> dict:
    rng = np.random.default_rng(0)
    incoming = ares.incoming_beam()
    their_incoming = to_cheetah(incoming)
    results: dict[str, dict] = {}

    def uniform(n):
        return rng.uniform(ares.SETTING_LOWER, ares.SETTING_UPPER, (n, 5))

    def tensor(a):
        return a if isinstance(a, torch.Tensor) else torch.tensor(a, dtype=torch.float64)

    # Cheetah rebuilt from tensors for every call, as in its peer script.
    def cheetah_observe(settings, misalignments, beam=their_incoming):
        s, m = tensor(settings), tensor(misalignments)
        segment = cheetah.Segment(
            [
                cheetah.Drift(tensor(0.17504)),
                cheetah.Quadrupole(tensor(0.122), s[..., 0], m[..., 0, :]),
                cheetah.Drift(tensor(0.428)),
                cheetah.Quadrupole(tensor(0.122), s[..., 1], m[..., 1, :]),
                cheetah.Drift(tensor(0.204)),
                cheetah.VerticalCorrector(tensor(0.02), s[..., 2]),
                cheetah.Drift(tensor(0.204)),
                cheetah.Quadrupole(tensor(0.122), s[..., 3], m[..., 2, :]),
                cheetah.Drift(tensor(0.179)),
                cheetah.HorizontalCorrector(tensor(0.02), s[..., 4]),
                cheetah.Drift(tensor(0.45)),
            ]
        )
        out = segment.track(beam)
        return {k: getattr(out, k) for k in ares.OBSERVABLES}

    jitted = jax.jit(lambda s, m: ares.screen_beam(s, m, incoming))

    # Inputs are converted to each library's arrays before timing, as in the peer script
    # (whose settings are torch tensors made beforehand).
    def ours_observe(settings, misalignments):
        return jitted(jnp.asarray(settings), jnp.asarray(misalignments))

    # (a) one track
    s1, m0 = uniform(1)[0], np.zeros((3, 2))
    prebuilt = cheetah_segment(s1, m0)
    t_s1, t_m0, j_s1, j_m0 = tensor(s1), tensor(m0), jnp.asarray(s1), jnp.asarray(m0)
    results["a_one_track"] = {
        "cheetah": timed(lambda: cheetah_observe(t_s1, t_m0), reps),
        "cheetah_prebuilt_segment": timed(lambda: prebuilt.track(their_incoming), reps),
        "diffdesign": timed(ready(lambda: jitted(j_s1, j_m0)), reps),
    }
    theirs, ours = cheetah_observe(s1, m0), ours_observe(s1, m0)
    results["a_one_track"]["max_relative_difference"] = max(
        abs(float(ours[k]) - float(theirs[k])) / abs(float(theirs[k])) for k in ours
    )

    # (b) batches of settings
    for n in sizes:
        s = uniform(n)
        m = np.zeros((n, 3, 2))
        batch_reps = max(3, reps // 10) if n >= 100_000 else reps
        ts, tm, js, jm = tensor(s), tensor(m), jnp.asarray(s), jnp.asarray(m)
        results[f"b_batch_{n}"] = {
            "cheetah": timed(lambda ts=ts, tm=tm: cheetah_observe(ts, tm), batch_reps),
            "diffdesign": timed(ready(lambda js=js, jm=jm: jitted(js, jm)), batch_reps),
        }
        theirs, ours = cheetah_observe(s, m), ours_observe(s, m)
        results[f"b_batch_{n}"]["max_relative_difference"] = max(
            float(
                np.max(np.abs(np.asarray(ours[k]) - theirs[k].numpy()) / np.abs(theirs[k].numpy()))
            )
            for k in ours
        )

    # (c) gradient of a 15-setting loss w.r.t. the 6 offsets
    s15 = uniform(15)
    t_s15 = tensor(s15)
    offsets = rng.uniform(-3e-4, 3e-4, (3, 2))

    def cheetah_gradient():
        off = tensor(offsets).requires_grad_(True)
        out = cheetah_observe(t_s15, off.expand(15, 3, 2))
        sum((v**2).sum() for v in out.values()).backward()
        return off.grad

    def loss(m):
        out = ares.screen_beam(s15, jnp.broadcast_to(m, (15, 3, 2)), incoming)
        return sum(jnp.sum(v**2) for v in out.values())

    ours_gradient = jax.jit(jax.grad(loss))
    j_offsets = jnp.asarray(offsets)
    results["c_gradient_15_settings_6_offsets"] = {
        "cheetah": timed(cheetah_gradient, reps),
        "diffdesign": timed(ready(lambda: ours_gradient(j_offsets)), reps),
    }
    g_theirs, g_ours = cheetah_gradient().numpy(), np.asarray(ours_gradient(offsets))
    results["c_gradient_15_settings_6_offsets"]["max_relative_difference"] = float(
        np.max(np.abs(g_ours - g_theirs) / np.abs(g_theirs))
    )

    # (d) particle beam through a prebuilt segment
    their_particles = cheetah.ParticleBeam.from_parameters(
        num_particles=particles, sigma_x=tensor(2e-4), sigma_y=tensor(2e-4), energy=tensor(1.0732e8)
    )
    our_particles = from_cheetah_beam(their_particles)
    our_segment = ares.segment(s1, m0)
    track = jax.jit(lambda segment, beam: segment.track(beam).particles)
    results[f"d_particles_{particles}"] = {
        "cheetah": timed(lambda: prebuilt.track(their_particles), reps),
        "diffdesign": timed(ready(lambda: track(our_segment, our_particles)), reps),
    }
    difference = (
        np.asarray(track(our_segment, our_particles))
        - prebuilt.track(their_particles).particles.numpy()
    )
    results[f"d_particles_{particles}"]["max_absolute_difference_m"] = float(
        np.max(np.abs(difference[:, [0, 2]]))
    )

    for entry in results.values():
        entry["speedup"] = entry["cheetah"]["median_s"] / entry["diffdesign"]["median_s"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/cpu/beamline_vs_cheetah.json")
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check it runs")
    args = parser.parse_args()
    if args.smoke:
        results = run(reps=3, sizes=(10, 100), particles=1000)
    else:
        results = run(reps=args.reps, sizes=(1_000, 100_000), particles=100_000)
    report = {
        "benchmark": "ARES experimental area: diffdesign vs Cheetah",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "jax_backend": jax.default_backend(),
            "jax_devices": [str(d) for d in jax.devices()],
        },
        "versions": {
            "diffdesign": diffdesign.__version__,
            "jax": jax.__version__,
            "cheetah": cheetah.__version__,
            "torch": torch.__version__,
        },
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"{'work':38s} {'Cheetah':>11s} {'diffdesign':>11s} {'compile':>9s} {'speed-up':>9s}")
    for name, entry in results.items():
        theirs, ours = entry["cheetah"], entry["diffdesign"]
        print(
            f"{name:38s} {theirs['median_s'] * 1e3:9.3f}ms {ours['median_s'] * 1e3:9.3f}ms "
            f"{ours['compile_s']:8.2f}s {entry['speedup']:8.1f}x"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
