"""Muon scattering tomography as pure JAX functions: muons, volumes, panels, scattering,
reconstruction, X0 inference, losses and gradient-based detector design (TomOpt-style).

The chain: :func:`generate_muons` (cosmic spectrum) -> :func:`propagate` (Highland multiple
scattering through the voxel grid, once per volume: it does not depend on the detector) ->
:func:`reconstruct` (hits, track fits, PoCA, angles and uncertainties) -> :func:`predict_x0`
with an :class:`X0Estimator` (:class:`Poca` or :class:`PathLikelihood`) -> losses.
:class:`DetectorDesign` is the design loss as a problem of the design layer, over
:func:`detector_spec` (every panel field bounded, with its own step), so
``diffdesign.design.run`` optimises it alone or jointly with other problems.
"""

from diffdesign.muography.design import (
    DEFAULT_STEPS,
    DetectorDesign,
    default_bounds,
    detector_from_json,
    detector_spec,
    detector_to_json,
    sample_passages,
)
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
from diffdesign.muography.pipeline import (
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    PathLikelihood,
    Poca,
    Reconstruction,
    X0Estimator,
    estimator_from_name,
    predict_x0,
    reconstruct,
)
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
    "DEFAULT_ESTIMATOR", "DEFAULT_STEPS", "ESTIMATORS", "MATERIALS", "Detector", "DetectorDesign",
    "Material", "MuonBatch", "Panels", "Passage", "PathLikelihood", "Poca", "Reconstruction",
    "Scatters", "Tracks", "Volume", "X0Estimator", "acceptance",
    "block_in_matrix", "block_presence_loss", "budget_penalty", "check_detector",
    "default_bounds", "default_detector", "detector_from_json", "detector_spec",
    "detector_to_json", "estimator_from_name", "fill_height",
    "fill_level",
    "fit_tracks", "generate_muons", "guan_flux", "highland_variance", "log_x0_error",
    "make_panels", "make_volume", "material", "panel_cost", "predict_x0",
    "propagate", "reconstruct", "record_hits", "sample_passages", "scatters", "stack_volumes",
    "uniform_volume",
    "volume_from_function", "walls", "x0_error", "x0_likelihood", "x0_poca",
]  # fmt: skip
