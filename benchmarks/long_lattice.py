"""Long beamlines, diffdesign vs Cheetah side by side in one process: Cheetah's own
1,058-element speed-notebook line and its whole ARES linac (195 elements, lattice JSON).

    python benchmarks/long_lattice.py [--out benchmarks/results/cpu/long_lattice.json] [--smoke]

Work measured (float64, CPU unless JAX finds an accelerator; one ParameterBeam):
  (a) one track with new settings of the four correctors each call: ours jitted over the
      four angles; Cheetah as its notebook tracks it, unmerged and with the fixed elements'
      maps merged beforehand (``transfer_maps_merged``);
  (b) one track with every quadrupole's k1 (450 settings) new each call: nothing can be
      merged (Cheetah sets 450 attributes, then tracks);
  (c) 1,000 and 100,000 corrector settings in one batch (Cheetah merged, vectorised);
  (d) cost against length: 130 to 1,058 elements, ours (compile and steady) and Cheetah's;
  (e) the ARES linac from its file: a track with new settings of its quadrupoles each call;
  (f) a ParticleBeam through the longest line, without and with space charge
      (``space_charge.track_particles``, one kick per drift and quadrupole, 32^3 grid) and the
      gradient of its exit rms size w.r.t. one quadrupole: time, compile time and the
      compiled gradient's temporary memory; Cheetah tracks the particles without space
      charge (its SpaceChargeKick on every element was not run: minutes per call).
Compile time (first call minus the steady-state median) and steady-state medians apart;
speed-up = Cheetah median / ours. Every case checks that both give the same beam.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cheetah
import jax
import jax.numpy as jnp
import numpy as np
import torch
from _timing import timed, write_report  # benchmarks/_timing.py (scripts run from their folder)

import diffdesign.beamline as bl
from diffdesign.beamline.convert import to_cheetah
from diffdesign.beamline.lattice_json import read_lattice_json
from diffdesign.beamline.space_charge import track_particles

torch.set_default_dtype(torch.float64)
ARES_FILE = Path(__file__).parent / "data" / "ARESlatticeStage3v1_9.json"
CORRECTORS = ("HCOR_1", "VCOR_1", "HCOR_2", "VCOR_2")
ANGLES = tuple(f"{name}.angle" for name in CORRECTORS)


def notebook_line(cells: int) -> bl.Segment:
    """Cheetah's speed-notebook lattice with ``cells`` cells (150: 1,058 elements)."""

    def corrector(kind, name):
        return kind(0.1, 0.0, name=name)

    head = [corrector(bl.HorizontalCorrector, "HCOR_1"), bl.Drift(0.3),
            corrector(bl.VerticalCorrector, "VCOR_1"), bl.Drift(0.3)]  # fmt: skip
    body = []
    for i in range(cells):
        body += [bl.Quadrupole(0.1, 4.2, name=f"QF{i}"), bl.Drift(0.2),
                 bl.Quadrupole(0.1, -4.2, name=f"QD{i}"), bl.Drift(0.2), bl.Marker(),
                 bl.Quadrupole(0.1, 0.0, name=f"Q0{i}"), bl.Drift(0.2)]  # fmt: skip
    tail = [corrector(bl.HorizontalCorrector, "HCOR_2"), bl.Drift(0.3),
            corrector(bl.VerticalCorrector, "VCOR_2"), bl.Drift(0.3)]  # fmt: skip
    return bl.Segment(head + body + tail)


def ready(fn):
    return lambda: jax.block_until_ready(fn())


def moments(track):
    """``track`` jitted to return the outgoing mean and covariance (as Cheetah's track
    computes them); returning the beam object would time its reconstruction in Python too."""

    def mean_and_covariance(*args):
        beam = track(*args)
        return beam.mu, beam.cov

    return jax.jit(mean_and_covariance)


def _difference(ours, theirs) -> float:
    """Largest difference of mean and covariance, relative to the largest covariance entry."""
    cov, their_cov = np.asarray(ours.cov), theirs.cov.detach().numpy()
    mu, their_mu = np.asarray(ours.mu), theirs.mu.detach().numpy()
    cov_error = np.abs(cov - their_cov).max() / np.abs(their_cov).max()
    mu_error = np.abs(mu - their_mu).max() / max(np.abs(their_mu).max(), 1e-300)
    return float(max(cov_error, mu_error))


def _set(segment, names, values) -> None:
    for name, value in zip(names, values, strict=True):
        element = getattr(segment, name)
        if isinstance(element, cheetah.Quadrupole):
            element.k1 = value
        else:
            element.angle = value


def particles_case(line: bl.Segment, theirs, n: int, reps: int) -> dict:
    """(f): particles without and with space charge, the gradient's time and memory."""
    beam = bl.ParticleBeam.from_parameters(
        n, jax.random.key(0), sigma_x=3e-4, sigma_px=2e-6, sigma_y=3e-4, sigma_py=2e-6,
        sigma_tau=1e-3, energy=1.07e8, total_charge=1e-10,
    )  # fmt: skip
    charged = (bl.Drift, bl.Quadrupole, bl.Solenoid)
    kicks = sum(isinstance(e, charged) and float(e.length) > 0 for e in line.elements)
    entry: dict = {"elements": len(line), "particles": n, "kicks": kicks}
    k1 = jnp.asarray(4.2 * 1.01)
    cases = (
        ("no_space_charge", lambda s: s.track(beam)),
        ("space_charge", lambda s: track_particles(s, beam, slices=1)),
    )
    for label, through in cases:

        def size(k, through=through):
            return through(line.with_settings({"QF0.k1": k})).sigma_x

        track, gradient = jax.jit(size), jax.jit(jax.grad(size))
        slow = label == "space_charge"
        timing = timed(ready(lambda track=track: track(k1)), 3 if slow else reps,
                       warmup=1 if slow else 5)  # fmt: skip
        start = time.perf_counter()
        compiled = gradient.lower(k1).compile()
        compile_s = time.perf_counter() - start
        gradient_timing = timed(
            ready(lambda c=compiled: c(k1)), 1 if slow else reps, warmup=0 if slow else 5
        )
        entry[label] = {
            "diffdesign": timing,
            "gradient": gradient_timing | {"compile_s": compile_s},
            "gradient_temp_bytes": int(compiled.memory_analysis().temp_size_in_bytes),
        }
    their_beam = to_cheetah(beam)
    _set(theirs, ["QF0"], torch.tensor([float(k1)]))
    entry["no_space_charge"]["cheetah"] = timed(lambda: theirs.track(their_beam), reps)
    ours = float(line.with_settings({"QF0.k1": k1}).track(beam).sigma_x)
    entry["no_space_charge"]["sigma_x_relative_difference"] = abs(
        ours / float(theirs.track(their_beam).sigma_x) - 1
    )
    _set(theirs, ["QF0"], torch.tensor([4.2]))
    entry["space_charge_over_none_sigma_x"] = float(jax.jit(
        lambda: track_particles(line, beam, slices=1).sigma_x)() / line.track(beam).sigma_x
    )  # fmt: skip
    return entry


def run(reps: int, cells: tuple[int, ...], sizes: tuple[int, ...], particles: int) -> dict:
    rng = np.random.default_rng(0)
    beam = bl.ParameterBeam.from_parameters(
        sigma_x=1e-4, sigma_px=2e-6, sigma_y=1e-4, sigma_py=2e-6, energy=1.07e8
    )
    their_beam = to_cheetah(beam)
    results: dict[str, dict] = {}
    longest = max(cells)
    line = notebook_line(longest)
    theirs = to_cheetah(line)
    merged = theirs.transfer_maps_merged(incoming_beam=their_beam, except_for=list(CORRECTORS))

    # (a) four corrector settings new each call
    angles = rng.normal(0.0, 1e-4, 4)

    def track_correctors(a):
        return line.with_settings(dict(zip(ANGLES, a, strict=True))).track(beam)

    correctors_moments = moments(track_correctors)
    settings_a = dict(zip(ANGLES, angles, strict=True))
    j_angles, t_angles = jnp.asarray(angles), torch.tensor(angles)

    def cheetah_correctors(segment):
        _set(segment, CORRECTORS, t_angles)
        return segment.track(their_beam)

    results["a_four_correctors"] = {
        "elements": len(line.elements),
        "cheetah": timed(lambda: cheetah_correctors(theirs), reps),
        "cheetah_merged": timed(lambda: cheetah_correctors(merged), reps),
        "diffdesign": timed(ready(lambda: correctors_moments(j_angles)), reps),
        "max_relative_difference": _difference(
            line.with_settings(settings_a).track(beam), cheetah_correctors(theirs)
        ),
    }

    _set(theirs, CORRECTORS, torch.zeros(4))  # (b) leaves the correctors at zero

    # (b) every quadrupole's k1 new each call
    quads = [e.name for e in line.elements if isinstance(e, bl.Quadrupole)]
    k1 = np.asarray([float(line[n].k1) for n in quads]) * rng.uniform(0.95, 1.05, len(quads))

    def track_quads(k):
        return line.with_settings({f"{n}.k1": k[i] for i, n in enumerate(quads)}).track(beam)

    quads_moments = moments(track_quads)
    j_k1, t_k1 = jnp.asarray(k1), torch.tensor(k1)

    def cheetah_quads():
        _set(theirs, quads, t_k1)
        return theirs.track(their_beam)

    results["b_every_quadrupole"] = {
        "settings": len(quads),
        "cheetah": timed(cheetah_quads, reps),
        "diffdesign": timed(ready(lambda: quads_moments(j_k1)), reps),
        "max_relative_difference": _difference(track_quads(j_k1), cheetah_quads()),
    }
    _set(theirs, quads, torch.tensor([float(line[n].k1) for n in quads]))

    # (c) batches of corrector settings
    for n in sizes:
        batch = rng.normal(0.0, 1e-4, (n, 4))
        j_batch, t_batch = jnp.asarray(batch), torch.tensor(batch)

        def cheetah_batch(t_batch=t_batch):
            _set(merged, CORRECTORS, t_batch.T)
            return merged.track(their_beam)

        batch_reps = max(3, reps // 10) if n >= 100_000 else reps
        results[f"c_batch_{n}"] = {
            "cheetah_merged": timed(cheetah_batch, batch_reps),
            "diffdesign": timed(
                ready(lambda j_batch=j_batch: correctors_moments(j_batch.T)), batch_reps
            ),
            "max_relative_difference": _difference(track_correctors(j_batch.T), cheetah_batch()),
        }

    _set(merged, CORRECTORS, torch.zeros(4))  # its correctors are theirs': no batch left

    # (d) cost against length
    scaling = {}
    for c in cells:
        segment = notebook_line(c)
        their_segment = to_cheetah(segment)
        fn = moments(
            lambda a, segment=segment: segment.with_settings(
                dict(zip(ANGLES, a, strict=True))
            ).track(beam)
        )  # fmt: skip
        scaling[str(len(segment.elements))] = {
            "cheetah": timed(lambda s=their_segment: cheetah_correctors(s), reps),
            "diffdesign": timed(ready(lambda fn=fn: fn(j_angles)), reps),
        }
    results["d_cost_against_length"] = scaling

    # (e) the ARES linac from its file
    ares = read_lattice_json(ARES_FILE)
    their_ares = cheetah.latticejson.load_cheetah_model(str(ARES_FILE))
    their_ares = their_ares.to(torch.float64)
    ares_quads = [e.name for e in ares.elements if isinstance(e, bl.Quadrupole)]
    ares_k1 = rng.uniform(-5.0, 5.0, len(ares_quads))
    ares_beam = bl.ParameterBeam.from_parameters(
        sigma_x=1e-4, sigma_px=2e-6, sigma_y=1e-4, sigma_py=2e-6, energy=5e6
    )
    their_ares_beam = to_cheetah(ares_beam)

    def track_ares(k):
        return ares.with_settings({f"{n}.k1": k[i] for i, n in enumerate(ares_quads)}).track(
            ares_beam
        )

    ares_moments = moments(track_ares)
    j_ares, t_ares = jnp.asarray(ares_k1), torch.tensor(ares_k1)
    their_quads = [e for e in their_ares.elements if isinstance(e, cheetah.Quadrupole)]
    assert [e.name for e in their_quads] == ares_quads

    def cheetah_ares():
        for element, value in zip(their_quads, t_ares, strict=True):
            element.k1 = value
        return their_ares.track(their_ares_beam)

    results["e_ares_linac"] = {
        "elements": len(ares.elements),
        "settings": len(ares_quads),
        "cheetah": timed(cheetah_ares, reps),
        "diffdesign": timed(ready(lambda: ares_moments(j_ares)), reps),
        "max_relative_difference": _difference(track_ares(j_ares), cheetah_ares()),
    }

    results["f_particles"] = particles_case(line, theirs, particles, reps)

    row = results["f_particles"]["no_space_charge"]
    row["speedup_over_cheetah"] = row["cheetah"]["median_s"] / row["diffdesign"]["median_s"]
    for key, entry in results.items():
        if key == "f_particles":
            continue
        if key == "d_cost_against_length":
            for row in entry.values():
                row["speedup"] = row["cheetah"]["median_s"] / row["diffdesign"]["median_s"]
            continue
        ours = entry["diffdesign"]["median_s"]
        for peer in ("cheetah", "cheetah_merged"):
            if peer in entry:
                entry[f"speedup_over_{peer}"] = entry[peer]["median_s"] / ours
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/cpu/long_lattice.json")
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--smoke", action="store_true", help="short lines, to check it runs")
    args = parser.parse_args()
    if args.smoke:
        results = run(reps=3, cells=(5, 10), sizes=(10,), particles=1_000)
    else:
        results = run(
            reps=args.reps, cells=(18, 37, 75, 150), sizes=(1_000, 100_000), particles=10_000
        )
    out = write_report(
        args.out, "long beamlines: diffdesign vs Cheetah", results, smoke=args.smoke,
        versions={"cheetah": cheetah.__version__, "torch": torch.__version__},
    )  # fmt: skip
    print(f"{'work':28s} {'Cheetah':>10s} {'merged':>10s} {'ours':>10s} {'compile':>8s} {'x':>7s}")
    for name, entry in results.items():
        if name == "f_particles":
            continue
        rows = entry.items() if name == "d_cost_against_length" else [(name, entry)]
        for label, row in rows:
            theirs = row.get("cheetah", {}).get("median_s", float("nan"))
            merged = row.get("cheetah_merged", {}).get("median_s", float("nan"))
            ours = row["diffdesign"]
            best = theirs if theirs == theirs else merged
            print(f"{label:28s} {theirs * 1e3:8.3f}ms {merged * 1e3:8.3f}ms "
                  f"{ours['median_s'] * 1e3:8.4f}ms {ours['compile_s']:7.2f}s "
                  f"{best / ours['median_s']:6.0f}x")  # fmt: skip
    f = results["f_particles"]
    for label in ("no_space_charge", "space_charge"):
        row = f[label]
        print(
            f"particles {label:16s} track {row['diffdesign']['median_s'] * 1e3:9.2f} ms "
            f"(compile {row['diffdesign']['compile_s']:.1f} s), gradient "
            f"{row['gradient']['median_s'] * 1e3:9.2f} ms (compile "
            f"{row['gradient']['compile_s']:.1f} s, {row['gradient_temp_bytes'] / 1e6:.1f} MB)"
        )
    print(
        f"Cheetah, particles without space charge: "
        f"{f['no_space_charge']['cheetah']['median_s'] * 1e3:.2f} ms"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
