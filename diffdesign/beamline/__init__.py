"""Differentiable beam optics with Cheetah's vocabulary and conventions.

Elements (`Drift`, `Quadrupole`, `Dipole`, correctors, `Screen`, `BPM`, ...) and beams
(`ParameterBeam`, `ParticleBeam`) are immutable PyTrees; a `Segment` tracks a beam with
pure functions that jit, vmap over settings and differentiate w.r.t. any numeric field.
Optics functions (Twiss, phase advance, dispersion along a line; the periodic solution of a
cell) are ``optics_along`` and ``periodic_optics``.
Lattice files of every format the ring readers take (AT ``.m``/``.mat``, elegant ``.lte``,
JSON) become segments with ``diffdesign.beamline.from_description.segment_from_description``
(not imported here: it needs the ring package); Cheetah's lattice JSON files are read by
``diffdesign.beamline.lattice_json.read_lattice_json``.
"""

from diffdesign.beamline.beams import Beam, ParameterBeam, ParticleBeam
from diffdesign.beamline.elements import (
    BPM,
    Aperture,
    Cavity,
    CombinedCorrector,
    CustomTransferMap,
    Dipole,
    Drift,
    DriftKickDrift,
    Element,
    EllipticalAperture,
    HorizontalCorrector,
    Marker,
    Quadrupole,
    RBend,
    Screen,
    Sextupole,
    Solenoid,
    SpaceChargeKick,
    TransverseDeflectingCavity,
    TravelingWaveCavity,
    Undulator,
    VerticalCorrector,
    superimpose,
)
from diffdesign.beamline.optics import Optics, optics_along, periodic_optics, transfer_along
from diffdesign.beamline.segment import Segment
from diffdesign.beamline.species import ELECTRON, Species

__all__ = [
    "BPM",
    "ELECTRON",
    "Aperture",
    "Beam",
    "Cavity",
    "CombinedCorrector",
    "CustomTransferMap",
    "Dipole",
    "Drift",
    "DriftKickDrift",
    "Element",
    "EllipticalAperture",
    "HorizontalCorrector",
    "Marker",
    "Optics",
    "ParameterBeam",
    "ParticleBeam",
    "Quadrupole",
    "RBend",
    "Screen",
    "Segment",
    "Sextupole",
    "Solenoid",
    "SpaceChargeKick",
    "Species",
    "TransverseDeflectingCavity",
    "TravelingWaveCavity",
    "Undulator",
    "VerticalCorrector",
    "optics_along",
    "periodic_optics",
    "superimpose",
    "transfer_along",
]
