"""The ARES experimental area (DESY): lattice, screen beam, calibration and tuning.

Settings are ordered (q1, q2, cv, q3, ch): the strengths k1 of AREAMQZM1, AREAMQZM2 and
AREAMQZM3 in 1/m^2 and the kicks of AREAMCVM1 (vertical) and AREAMCHM1 (horizontal) in
rad. Misalignments ("offsets") are the quadrupoles' displacements (dx, dy) in m, shape
(3, 2), in the convention of Cheetah's ``Quadrupole.misalignment``.
"""

from diffdesign.beamline.ares._lattice import (
    CORRECTOR_LENGTH,
    ENERGY,
    INCOMING_PARAMETERS,
    OBSERVABLES,
    QUADRUPOLE_LENGTH,
    QUADRUPOLES,
    SCREEN,
    SETTING_LOWER,
    SETTING_NAMES,
    SETTING_UPPER,
    TOTAL_CHARGE,
    incoming_beam,
    mae,
    screen_beam,
    segment,
)
from diffdesign.beamline.ares.problems import (
    CalibrationProblem,
    TuningProblem,
    offsets_spec,
    settings_spec,
)

__all__ = [
    "CORRECTOR_LENGTH",
    "ENERGY",
    "INCOMING_PARAMETERS",
    "OBSERVABLES",
    "QUADRUPOLES",
    "QUADRUPOLE_LENGTH",
    "SCREEN",
    "SETTING_LOWER",
    "SETTING_NAMES",
    "SETTING_UPPER",
    "TOTAL_CHARGE",
    "CalibrationProblem",
    "TuningProblem",
    "incoming_beam",
    "mae",
    "offsets_spec",
    "screen_beam",
    "segment",
    "settings_spec",
]
