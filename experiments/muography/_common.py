"""Shared by the muography commands: the study config from --config, --smoke and --seed."""

from __future__ import annotations

import argparse
import dataclasses


def study_config(args: argparse.Namespace):
    from experiments.muography import _studies as studies

    config_class = studies.MuographyStudyConfig
    config = config_class.from_toml(args.config) if args.config else config_class()
    config = config.smoke() if args.smoke else config
    if args.seed is not None:
        config = dataclasses.replace(config, seed=args.seed)
    return config
