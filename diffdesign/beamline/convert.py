"""Converters between diffdesign and Cheetah objects (Cheetah is imported only here).

Cheetah and PyTorch are optional: these functions raise ``ImportError`` with the install
command when they are missing. Tensors become float64 arrays and back.
"""

from __future__ import annotations

import numpy as np

from diffdesign.beamline.beams import Beam, ParameterBeam, ParticleBeam
from diffdesign.beamline.elements import DriftKickDrift
from diffdesign.beamline.lattice_json import HIDDEN_FEATURES, features_of, segment_from_features
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


def _features(element) -> dict:
    """A Cheetah element's constructor parameters: its ``defining_features`` and those
    Cheetah keeps outside them (``lattice_json.HIDDEN_FEATURES``, a BPM's misalignment)."""
    hidden = HIDDEN_FEATURES.get(type(element).__name__, ())
    names = [n for n in element.defining_features if n != "name"]
    names += [n for n in hidden if hasattr(element, n)]
    return {n: _plain(getattr(element, n)) for n in names}


def _plain(value):
    """A Cheetah attribute as the lattice-JSON value: tensors become numbers or lists, an
    element (a Superimposed's parts) its (class, name, parameters)."""
    if hasattr(value, "defining_features"):
        return (type(value).__name__, value.name, _features(value))
    return _array(value) if hasattr(value, "detach") else value


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
    """A diffdesign :class:`Segment` from a ``cheetah.Segment`` (nested segments flattened),
    converted by the table of Cheetah's lattice JSON reader
    (:func:`~diffdesign.beamline.lattice_json.element_from_features`), so a segment and the
    file Cheetah saves of it convert alike.

    Each element's ``tracking_method`` is kept: ``"second_order"`` elements become the
    segment's ``second_order`` positions (``track(beam, reproduce_cheetah=True)`` then
    tracks as Cheetah does; the default uses MAD8's second-order integrals, which differ
    from Cheetah's for sextupoles and combined-function bends). ``"drift_kick_drift"``
    drifts, quadrupoles and bends become :class:`~diffdesign.beamline.DriftKickDrift`
    elements (a bend with k1 != 0 is refused: Cheetah ignores its k1 then). A
    ``Superimposed`` places its base's
    halves around its element (:func:`~diffdesign.beamline.superimpose`).

    Raises:
        ValueError: naming the first element whose type or parameter has no counterpart
            here, or the elements tracked drift-kick-drift.
    """
    cheetah, _ = _cheetah()
    if not isinstance(segment, cheetah.Segment):
        raise TypeError(f"segment must be a cheetah.Segment; got {type(segment).__name__}")
    items = [(type(e).__name__, e.name, _features(e)) for e in _leaves(segment, cheetah)]
    return segment_from_features(items, segment.name)


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

    def named(element):
        # Keep our names exactly (Cheetah would otherwise warn about or rewrite them).
        return {"name": element.name or None, "sanitize_name": False}

    if isinstance(obj, Segment):
        elements = [to_cheetah(e) for e in obj.elements]
        for position, element in enumerate(elements):
            # explicit both ways: Cheetah's Sextupole defaults to second order
            if isinstance(obj.elements[position], DriftKickDrift):
                continue  # its features carry tracking_method="drift_kick_drift"
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
    try:
        kind, features = features_of(obj)
    except TypeError:
        raise TypeError(
            f"to_cheetah takes a Segment, an Element or a beam; got {type(obj).__name__}"
        ) from None
    vectors = ("resolution", "grid_shape")  # plain sequences; every other number a tensor
    arguments = {
        k: t(v) if isinstance(v, float | list) and k not in vectors else v
        for k, v in features.items()
    }
    if "grid_shape" in arguments:
        arguments["grid_shape"] = tuple(arguments["grid_shape"])
    return getattr(cheetah, kind)(**arguments, **named(obj))
