"""Space charge three ways on one beamline: the rms envelope (diffrax), our particle kicks and
Cheetah's SpaceChargeKick, side by side in one process.

    python benchmarks/space_charge.py [--smoke] [--out benchmarks/results/cpu/space_charge.json]

Line: drift 0.5 m, quadrupole 0.2 m (k1 = 5 / m^2), drift 0.5 m; 10 MeV electrons, 100 pC in
a flat-top bunch 3 mm long (a uniform current, for which the rms envelope equations hold in
every slice) with Gaussian transverse sizes 0.2 and 0.3 mm and 1 mm mrad normalised
emittances. Space charge makes the exit sizes 27% (x) and 20% (y) larger than without it.
Measured (float64, CPU unless JAX finds an accelerator):

  (a) the envelope (``space_charge.track_envelope``) at rtol 1e-10 (the default) and 1e-6
      (matched to the model's own error, ~0.5% here): first call, steady track, exit sizes;
  (b) our particles (``space_charge.track_particles``; 32^3 grid, 3 sigma): steady track and
      compile for particle counts x slices per element, exit sizes;
  (c) Cheetah 0.8.4 on the same particles and the same split (half slice, SpaceChargeKick,
      half slice), exit sizes and steady track;
  (d) the gradient of the exit sigma_x w.r.t. the bunch charge: compiled temporary memory of
      the checkpointed scan (2 checkpoints) and of a checkpoint at every kick, 8 to 128 kicks.

Accuracy: the relative error of each exit size against our best-converged run (the most
particles and slices, a 64 x 64 x 32 grid over 5 sigma). "envelope_cost_ratio" is the steady
time of the cheapest particle run whose error is at most the cheaper envelope's, over the
envelope's (or, when none is that accurate, over the most accurate one: a lower bound).
"""

from __future__ import annotations

import argparse
import time

import cheetah
import jax
import jax.numpy as jnp
import numpy as np
import torch
from _timing import timed, write_report  # benchmarks/_timing.py (scripts run from their folder)

import diffdesign.beamline as bl
from diffdesign.beamline.convert import to_cheetah
from diffdesign.beamline.space_charge import track_envelope, track_particles

torch.set_default_dtype(torch.float64)

ENERGY, CHARGE, LENGTH_TAU = 1e7, 1e-10, 3e-3
SIZES = {"sigma_x": 2e-4, "sigma_y": 3e-4}


def line() -> bl.Segment:
    return bl.Segment([bl.Drift(0.5, "D1"), bl.Quadrupole(0.2, 5.0, name="Q"), bl.Drift(0.5, "D2")])


def particle_beam(n: int, seed: int = 0) -> bl.ParticleBeam:
    """Gaussian in x, px, y, py (1 mm mrad normalised), uniform over LENGTH_TAU in tau,
    1e-4 in p."""
    emittance = 5e-8  # geometric: 1 mm mrad normalised at 10 MeV
    transverse = bl.ParticleBeam.from_parameters(
        n, jax.random.key(seed), energy=ENERGY, total_charge=CHARGE, sigma_p=1e-4,
        sigma_px=emittance / SIZES["sigma_x"], sigma_py=emittance / SIZES["sigma_y"], **SIZES,
    )  # fmt: skip
    tau = jax.random.uniform(jax.random.key(seed + 1), (n,), minval=-0.5, maxval=0.5)
    particles = transverse.particles.at[:, 4].set(tau * LENGTH_TAU)
    return bl.ParticleBeam(particles, ENERGY, transverse.particle_charges)


def envelope_beam(beam: bl.ParticleBeam) -> bl.ParameterBeam:
    """The particles' moments with the bunch length of the Gaussian of the same peak current
    (the envelope's current is the peak one): sigma_tau = length / sqrt(2 pi)."""
    moments = beam.as_parameter_beam()
    sigma_tau = LENGTH_TAU / np.sqrt(2 * np.pi)
    cov = moments.cov.at[4, :].set(0.0).at[:, 4].set(0.0).at[4, 4].set(sigma_tau**2)
    return bl.ParameterBeam(moments.mu, cov, ENERGY, CHARGE)


def split_segment(segment: bl.Segment, slices: int, grid_shape) -> bl.Segment:
    """The split-step line written out: half slice, SpaceChargeKick of the slice, half slice."""
    elements = []
    for element in segment.elements:
        half = element.replace(length=element.length / (2 * slices))
        kick = bl.SpaceChargeKick(element.length / slices, grid_shape)
        elements += [half, kick, half] * slices
    return bl.Segment(elements)


def sizes(beam) -> dict[str, float]:
    return {"sigma_x": float(beam.sigma_x), "sigma_y": float(beam.sigma_y)}


def errors(found: dict, reference: dict) -> dict[str, float]:
    return {k: abs(found[k] / reference[k] - 1.0) for k in reference}


def gradient_memory(kicks: tuple[int, ...], n: int) -> dict:
    beam = particle_beam(n, seed=7)
    drift = bl.Segment([bl.Drift(1.0)])
    out = {}
    for checkpoints in (2, 1_000_000):

        def loss(scale, slices, checkpoints=checkpoints):
            start = bl.ParticleBeam(beam.particles, ENERGY, beam.particle_charges * scale)
            kicked = track_particles(
                drift, start, slices=slices, grid_shape=(32, 32, 32), checkpoints=checkpoints
            )
            return kicked.sigma_x

        label = "checkpointed_2" if checkpoints == 2 else "every_kick"
        out[label] = {}
        for k in kicks:
            compiled = jax.jit(jax.grad(loss), static_argnums=1).lower(1.0, k).compile()
            out[label][str(k)] = compiled.memory_analysis().temp_size_in_bytes
    out["particles"] = n
    out["bytes_per_particle_copy"] = n * 7 * 8
    return out


def run(
    counts: tuple[int, ...],
    slice_counts: tuple[int, ...],
    reference: tuple[int, int],
    cheetah_runs: tuple[tuple[int, int], ...],
    reps: int,
    kicks: tuple[int, ...],
) -> dict:
    segment = line()
    grid = (32, 32, 32)
    results: dict = {}

    n_ref, slices_ref = reference
    ref_beam = particle_beam(n_ref)
    start = time.perf_counter()
    ref_out = track_particles(
        segment, ref_beam, slices=slices_ref, grid_shape=(64, 64, 32), grid_extent=(5.0, 5.0, 3.0)
    )
    reference_sizes = sizes(ref_out)
    results["reference"] = {
        "particles": n_ref, "slices_per_element": slices_ref, "grid": [64, 64, 32],
        "grid_extent_sigma": [5, 5, 3], "wall_s": time.perf_counter() - start,
        "exit": reference_sizes, "no_space_charge": sizes(segment.track(ref_beam)),
        "entrance": sizes(ref_beam),
    }  # fmt: skip
    print(f"reference {reference_sizes}", flush=True)

    moments = envelope_beam(ref_beam)
    results["envelope"] = {}
    for rtol in (1e-10, 1e-6):  # the default, and one matched to the model's own error
        envelope = jax.jit(lambda b, rtol=rtol: track_envelope(segment, b, rtol=rtol, atol=rtol))
        timing = timed(lambda envelope=envelope: jax.block_until_ready(envelope(moments)), reps)
        out = sizes(envelope(moments))
        results["envelope"][f"rtol_{rtol:g}"] = {
            "timing": timing, "exit": out, "relative_error": errors(out, reference_sizes),
        }  # fmt: skip
        print(f"envelope rtol {rtol:g} {out} {timing['median_s'] * 1e3:.2f} ms", flush=True)

    ours = {}
    for n in counts:
        beam = particle_beam(n)
        for slices in slice_counts:
            fn = jax.jit(lambda b, slices=slices: track_particles(segment, b, slices=slices,
                                                                  grid_shape=grid))  # fmt: skip
            timing = timed(lambda fn=fn, beam=beam: jax.block_until_ready(fn(beam)), reps, 1)
            out = sizes(fn(beam))
            key = f"n{n}_slices{slices}"
            ours[key] = {
                "particles": n, "slices_per_element": slices, "kicks": 3 * slices,
                "timing": timing, "exit": out, "relative_error": errors(out, reference_sizes),
            }  # fmt: skip
            print(f"ours {key} {out} {ours[key]['timing']['median_s']:.3f} s", flush=True)
    results["ours"] = ours

    theirs = {}
    for n, slices in cheetah_runs:
        beam = particle_beam(n)
        their_beam = to_cheetah(beam)
        their_segment = to_cheetah(split_segment(segment, slices, grid))
        out = sizes(their_segment.track(their_beam))
        key = f"n{n}_slices{slices}"
        timing = timed(lambda s=their_segment, b=their_beam: s.track(b), max(1, reps // 2), 1)
        theirs[key] = {
            "particles": n, "slices_per_element": slices, "kicks": 3 * slices, "timing": timing,
            "exit": out, "relative_error": errors(out, reference_sizes),
            "ours_same_split": ours.get(key, {}).get("exit"),
            "ratio_cheetah_over_ours": (
                timing["median_s"] / ours[key]["timing"]["median_s"] if key in ours else None
            ),
        }  # fmt: skip
        print(f"cheetah {key} {out} {timing['median_s']:.3f} s", flush=True)
    results["cheetah"] = theirs

    cheapest = min(results["envelope"].values(), key=lambda r: r["timing"]["median_s"])
    envelope_error = max(cheapest["relative_error"].values())
    envelope_s = cheapest["timing"]["median_s"]
    ranked = sorted(ours.values(), key=lambda r: r["timing"]["median_s"])
    as_good = [r for r in ranked if max(r["relative_error"].values()) <= envelope_error]
    best = min(ours.values(), key=lambda r: max(r["relative_error"].values()))
    chosen = as_good[0] if as_good else best
    results["envelope_cost_ratio"] = {
        "envelope_run": min(
            results["envelope"], key=lambda k: results["envelope"][k]["timing"]["median_s"]
        ),
        "envelope_max_relative_error": envelope_error,
        "particle_run": f"n{chosen['particles']}_slices{chosen['slices_per_element']}",
        "particle_max_relative_error": max(chosen["relative_error"].values()),
        "ratio_particle_over_envelope": chosen["timing"]["median_s"] / envelope_s,
        "lower_bound": not as_good,
    }
    results["gradient_memory"] = gradient_memory(kicks, counts[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/cpu/space_charge.json")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check it runs")
    args = parser.parse_args()
    if args.smoke:
        results = run((2_000,), (1, 2), (4_000, 4), ((2_000, 1),), reps=2, kicks=(2, 4))
    else:
        results = run((10_000, 100_000), (2, 4, 8, 16), (200_000, 32),
                      ((10_000, 4), (100_000, 4)), reps=5, kicks=(8, 32, 128))  # fmt: skip
    out = write_report(
        args.out, "space charge: envelope vs particle kicks vs Cheetah", results, smoke=args.smoke,
        versions={"cheetah": cheetah.__version__, "torch": torch.__version__},
    )  # fmt: skip
    ratio = results["envelope_cost_ratio"]
    print(
        f"envelope error {ratio['envelope_max_relative_error']:.2e}; particle run "
        f"{ratio['particle_run']} (error {ratio['particle_max_relative_error']:.2e}) costs "
        f"{ratio['ratio_particle_over_envelope']:.0f}x the envelope"
        + (" (a lower bound)" if ratio["lower_bound"] else "")
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    jnp.zeros(())  # JAX initialised before torch's threads start
    main()
