"""Muon scattering tomography as pure JAX functions: muons, volumes, panels, scattering,
reconstruction, X0 inference, losses and gradient-based detector design (TomOpt-style).

The chain: :func:`generate_muons` (cosmic spectrum) -> :func:`propagate` (Highland multiple
scattering through the voxel grid, once per volume: it does not depend on the detector) ->
:func:`reconstruct` (hits, track fits, PoCA, angles and uncertainties) -> :func:`predict_x0`
(PoCA or the path likelihood) -> losses; :func:`optimize_detector` differentiates the whole
of it with respect to every panel field and steps with optax.
"""

from diffdesign.muography.detector import (
    Detector,
    Panels,
    acceptance,
    check_detector,
    default_detector,
    make_panels,
    record_hits,
)
from diffdesign.muography.inference import x0_likelihood, x0_poca
from diffdesign.muography.losses import (
    block_presence_loss,
    budget_penalty,
    fill_height,
    log_x0_error,
    panel_cost,
    x0_error,
)
from diffdesign.muography.materials import MATERIALS, Material, material
from diffdesign.muography.optimise import (
    DEFAULT_LEARNING_RATES,
    DesignResult,
    default_bounds,
    detector_from_json,
    detector_to_json,
    optimize_detector,
)
from diffdesign.muography.pipeline import ESTIMATORS, predict_x0, reconstruct
from diffdesign.muography.reconstruction import Scatters, Tracks, fit_tracks, scatters
from diffdesign.muography.scattering import Passage, highland_variance, propagate
from diffdesign.muography.source import MuonBatch, generate_muons, guan_flux
from diffdesign.muography.volume import (
    Volume,
    block_in_matrix,
    fill_level,
    make_volume,
    stack_volumes,
    uniform_volume,
    volume_from_function,
    walls,
)

__all__ = [
    "DEFAULT_LEARNING_RATES", "ESTIMATORS", "MATERIALS", "DesignResult", "Detector", "Material",
    "MuonBatch", "Panels", "Passage", "Scatters", "Tracks", "Volume", "acceptance",
    "block_in_matrix", "block_presence_loss", "budget_penalty", "check_detector",
    "default_bounds", "default_detector", "detector_from_json", "detector_to_json", "fill_height",
    "fill_level",
    "fit_tracks", "generate_muons", "guan_flux", "highland_variance", "log_x0_error",
    "make_panels", "make_volume", "material", "optimize_detector", "panel_cost", "predict_x0",
    "propagate", "reconstruct", "record_hits", "scatters", "stack_volumes", "uniform_volume",
    "volume_from_function", "walls", "x0_error", "x0_likelihood", "x0_poca",
]  # fmt: skip
