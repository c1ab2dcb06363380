"""Converters between diffdesign and Cheetah objects (Cheetah is imported only here).

Cheetah and PyTorch are optional: these functions raise ``ImportError`` with the install
command when they are missing. Tensors become float64 arrays and back.
"""

from __future__ import annotations

import numpy as np

from diffdesign.beamline.beams import Beam, ParameterBeam, ParticleBeam
from diffdesign.beamline.elements import (
    BPM,
    CombinedCorrector,
    CustomTransferMap,
    Dipole,
    Drift,
    Element,
    HorizontalCorrector,
    Marker,
    Quadrupole,
    Screen,
    Sextupole,
    Solenoid,
    VerticalCorrector,
)
from diffdesign.beamline.segment import Segment
from diffdesign.beamline.species import KNOWN_SPECIES, Species


def _cheetah():
    try:
        import cheetah
        import torch
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Cheetah conversion needs PyTorch and Cheetah: pip install torch==2.13.0 "
            "&& pip install 'diffdesign[peers]'"
        ) from error
    return cheetah, torch


def _array(tensor) -> np.ndarray:
    return np.asarray(tensor.detach().cpu().numpy(), dtype=float)


def _tilt(tensor) -> np.ndarray | None:
    """Cheetah always stores a tilt; an exactly zero one becomes None (an unrolled magnet)."""
    tilt = _array(tensor)
    return None if np.all(tilt == 0.0) else tilt


def _element_from_cheetah(element, cheetah) -> list[Element]:
    name = element.name
    kind = type(element)
    if kind is cheetah.Drift:
        return [Drift(_array(element.length), name)]
    if kind is cheetah.Quadrupole:
        return [
            Quadrupole(
                _array(element.length),
                _array(element.k1),
                _array(element.misalignment),
                _tilt(element.tilt),
                name,
            )
        ]
    if kind is cheetah.Sextupole:
        return [
            Sextupole(
                _array(element.length),
                _array(element.k2),
                _array(element.misalignment),
                _tilt(element.tilt),
                name,
            )
        ]
    if isinstance(element, cheetah.Dipole):  # RBend is a Dipole with shifted pole faces
        return [
            Dipole(
                _array(element.length),
                _array(element.angle),
                _array(element.k1),
                _array(element.dipole_e1),
                _array(element.dipole_e2),
                _tilt(element.tilt),
                _array(element.gap),
                _array(element.fringe_integral),
                _array(element.fringe_integral_exit),
                name,
            )
        ]
    if kind is cheetah.Solenoid:
        return [
            Solenoid(_array(element.length), _array(element.k), _array(element.misalignment), name)
        ]
    if kind is cheetah.CombinedCorrector:
        return [
            CombinedCorrector(
                _array(element.length), _array(element.horizontal_angle),
                _array(element.vertical_angle), name,
            )
        ]  # fmt: skip
    if kind is cheetah.CustomTransferMap:
        return [
            CustomTransferMap(_array(element.predefined_transfer_map), _array(element.length), name)
        ]
    if kind is cheetah.HorizontalCorrector:
        return [HorizontalCorrector(_array(element.length), _array(element.angle), name)]
    if kind is cheetah.VerticalCorrector:
        return [VerticalCorrector(_array(element.length), _array(element.angle), name)]
    if kind is cheetah.Screen:
        return [
            Screen(
                tuple(element.resolution),
                _array(element.pixel_size),
                element.binning,
                _array(element.misalignment),
                element.is_active,
                name,
            )
        ]
    if kind is cheetah.BPM:
        return [BPM(_array(element.misalignment), element.is_active, name)]
    if kind is cheetah.Marker:
        return [Marker(name)]
    raise ValueError(
        f"element '{name}' of Cheetah type {kind.__name__} has no diffdesign counterpart yet; "
        "supported: Drift, Quadrupole, Sextupole, Dipole, RBend, Solenoid, HorizontalCorrector, "
        "VerticalCorrector, CombinedCorrector, CustomTransferMap, Screen, BPM, Marker (and "
        "nested Segments)"
    )


def _leaves(segment, cheetah) -> list:
    """The Cheetah elements of ``segment`` in beam order, nested segments flattened."""
    return [
        leaf
        for element in segment.elements
        for leaf in (
            _leaves(element, cheetah) if isinstance(element, cheetah.Segment) else [element]
        )
    ]


def from_cheetah(segment) -> Segment:
    """A diffdesign :class:`Segment` from a ``cheetah.Segment`` (nested segments flattened).

    Each element's ``tracking_method`` is kept: ``"second_order"`` elements become the
    segment's ``second_order`` positions (``track(beam, reproduce_cheetah=True)`` then
    tracks as Cheetah does; the default uses MAD8's second-order integrals, which differ
    from Cheetah's for sextupoles and combined-function bends). ``"drift_kick_drift"`` has
    no counterpart here yet and is refused.

    Raises:
        ValueError: naming the first element whose type has no counterpart here, or the
            elements tracked drift-kick-drift.
    """
    cheetah, _ = _cheetah()
    if not isinstance(segment, cheetah.Segment):
        raise TypeError(f"segment must be a cheetah.Segment; got {type(segment).__name__}")
    leaves = _leaves(segment, cheetah)
    # Elements with one way of tracking name it after their class ("bpm", "screen", ...).
    methods = [getattr(leaf, "tracking_method", "linear") for leaf in leaves]
    refused = [leaf.name for leaf, m in zip(leaves, methods, strict=True) if m in _REFUSED]
    if refused:
        raise ValueError(
            f"elements {refused} use tracking methods {sorted(set(methods) & set(_REFUSED))}, "
            "which diffdesign cannot keep (drift-kick-drift tracking is not built yet); set "
            "their tracking_method to 'linear' or 'second_order' in Cheetah to convert them"
        )
    elements = [e for leaf in leaves for e in _element_from_cheetah(leaf, cheetah)]
    marked = [i for i, m in enumerate(methods) if m == "second_order"]
    return Segment(elements, segment.name, second_order=marked)


#: Cheetah tracking methods a converted segment cannot keep.
_REFUSED = ("drift_kick_drift",)


def _species_from_cheetah(species) -> Species:
    mass = float(species.mass_eV)
    charge = float(species.num_elementary_charges)
    known = KNOWN_SPECIES.get(species.name)
    if known is not None and known.mass_eV == mass and known.num_elementary_charges == charge:
        return known
    return Species(species.name, mass, charge)


def from_cheetah_beam(beam) -> Beam:
    """A :class:`ParameterBeam` or :class:`ParticleBeam` from the Cheetah beam of that kind."""
    cheetah, _ = _cheetah()
    species = _species_from_cheetah(beam.species)
    if isinstance(beam, cheetah.ParameterBeam):
        return ParameterBeam(
            _array(beam.mu),
            _array(beam.cov),
            _array(beam.energy),
            _array(beam.total_charge),
            _array(beam.s),
            species,
        )
    if isinstance(beam, cheetah.ParticleBeam):
        return ParticleBeam(
            _array(beam.particles),
            _array(beam.energy),
            _array(beam.particle_charges),
            _array(beam.survival_probabilities),
            _array(beam.s),
            species,
        )
    raise TypeError(
        f"beam must be a Cheetah ParameterBeam or ParticleBeam; got {type(beam).__name__}"
    )


def to_cheetah(obj):
    """The Cheetah counterpart of a diffdesign Segment, Element, ParameterBeam or ParticleBeam."""
    cheetah, torch = _cheetah()

    def t(value):
        return torch.tensor(np.array(value, dtype=float), dtype=torch.float64)

    def tilt(value):
        return t(0.0 if value is None else value)

    def named(element):
        # Keep our names exactly (Cheetah would otherwise warn about or rewrite them).
        return {"name": element.name or None, "sanitize_name": False}

    if isinstance(obj, Segment):
        elements = [to_cheetah(e) for e in obj.elements]
        for position, element in enumerate(elements):
            # explicit both ways: Cheetah's Sextupole defaults to second order
            if "linear" in element.supported_tracking_methods:
                marked = position in obj.second_order
                element.tracking_method = "second_order" if marked else "linear"
        return cheetah.Segment(elements, **named(obj))
    if isinstance(obj, Beam):
        if KNOWN_SPECIES.get(obj.species.name) == obj.species:
            species = cheetah.Species(obj.species.name)
        else:
            species = cheetah.Species(
                obj.species.name,
                num_elementary_charges=t(obj.species.num_elementary_charges),
                mass_eV=t(obj.species.mass_eV),
            )
        if isinstance(obj, ParameterBeam):
            return cheetah.ParameterBeam(
                t(obj.mu), t(obj.cov), t(obj.energy), t(obj.total_charge), t(obj.s), species
            )
        return cheetah.ParticleBeam(
            t(obj.particles),
            t(obj.energy),
            t(obj.particle_charges),
            t(obj.survival_probabilities),
            t(obj.s),
            species,
        )
    converters = {
        Drift: lambda e: cheetah.Drift(t(e.length), **named(e)),
        Quadrupole: lambda e: cheetah.Quadrupole(
            t(e.length), t(e.k1), t(e.misalignment), tilt(e.tilt), **named(e)
        ),
        Sextupole: lambda e: cheetah.Sextupole(
            t(e.length), t(e.k2), t(e.misalignment), tilt(e.tilt), **named(e)
        ),
        Dipole: lambda e: cheetah.Dipole(
            t(e.length),
            t(e.angle),
            t(e.k1),
            t(e.e1),
            t(e.e2),
            tilt(e.tilt),
            t(e.gap),
            fringe_integral=t(e.fringe_integral),
            fringe_integral_exit=(
                None if e.fringe_integral_exit is None else t(e.fringe_integral_exit)
            ),
            **named(e),
        ),
        HorizontalCorrector: lambda e: cheetah.HorizontalCorrector(
            t(e.length), t(e.angle), **named(e)
        ),
        VerticalCorrector: lambda e: cheetah.VerticalCorrector(t(e.length), t(e.angle), **named(e)),
        Screen: lambda e: cheetah.Screen(
            e.resolution,
            t(e.pixel_size),
            e.binning,
            t(e.misalignment),
            is_active=e.is_active,
            **named(e),
        ),
        BPM: lambda e: cheetah.BPM(e.is_active, misalignment=t(e.misalignment), **named(e)),
        Marker: lambda e: cheetah.Marker(**named(e)),
        Solenoid: lambda e: cheetah.Solenoid(t(e.length), t(e.k), t(e.misalignment), **named(e)),
        CombinedCorrector: lambda e: cheetah.CombinedCorrector(
            t(e.length), t(e.horizontal_angle), t(e.vertical_angle), **named(e)
        ),
        CustomTransferMap: lambda e: cheetah.CustomTransferMap(
            t(e.transfer_map_array), t(e.length), **named(e)
        ),
    }
    try:
        return converters[type(obj)](obj)
    except KeyError:
        raise TypeError(
            f"to_cheetah takes a Segment, an Element or a beam; got {type(obj).__name__}"
        ) from None
