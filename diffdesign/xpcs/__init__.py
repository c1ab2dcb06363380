"""XPCS homodyne analysis: two-time models, data, least squares and Consensus Monte Carlo.

The model follows the `homodyne` package's conventions (Angstrom, 1/Angstrom, s, degrees).
"""

from diffdesign.xpcs.cmc import SCALING_TREATMENTS, CmcResult, fit_cmc, sample_shards
from diffdesign.xpcs.data import Points, XpcsData, points, shard_points, validate
from diffdesign.xpcs.io import (
    DataConfig,
    TwoTimeRing,
    estimate_sigma,
    load_data,
    load_data_config,
    read_aps_hdf5,
    read_npz,
    read_npz_metadata,
    read_toml,
    select_angles,
    write_aps_hdf5,
    write_npz,
)
from diffdesign.xpcs.likelihood import (
    DEFAULT_BOUNDS,
    Problem,
    log_likelihood,
    make_problem,
    pack,
    parameter_box,
    quantile_scaling,
    residuals,
    unpack,
)
from diffdesign.xpcs.model import (
    LAMINAR_PARAMETERS,
    STATIC_PARAMETERS,
    g1_pairs,
    g2,
    g2_pairs,
    mode_of,
    parameter_names,
    synthetic_c2,
)
from diffdesign.xpcs.nlsq import NlsqResult, fit_nlsq

__all__ = [
    "DEFAULT_BOUNDS",
    "LAMINAR_PARAMETERS",
    "SCALING_TREATMENTS",
    "STATIC_PARAMETERS",
    "CmcResult",
    "DataConfig",
    "NlsqResult",
    "Points",
    "Problem",
    "TwoTimeRing",
    "XpcsData",
    "estimate_sigma",
    "fit_cmc",
    "fit_nlsq",
    "g1_pairs",
    "g2",
    "g2_pairs",
    "load_data",
    "load_data_config",
    "log_likelihood",
    "make_problem",
    "mode_of",
    "pack",
    "parameter_box",
    "parameter_names",
    "points",
    "quantile_scaling",
    "read_aps_hdf5",
    "read_npz",
    "read_npz_metadata",
    "read_toml",
    "residuals",
    "sample_shards",
    "select_angles",
    "shard_points",
    "synthetic_c2",
    "unpack",
    "validate",
    "write_aps_hdf5",
    "write_npz",
]
