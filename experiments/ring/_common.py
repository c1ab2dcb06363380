"""Shared by the ring commands: the study config from --config, LATTICE and --smoke."""

from __future__ import annotations

import argparse

LATTICE_HELP = (
    "a packaged ring's name (nsls2, esrf, nsls2-elegant) or a lattice file: AT (.m, or .mat "
    "saved by MATLAB) or diffdesign JSON (.json); default: the config's `lattice` key, else nsls2"
)


def add_lattice_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("lattice", nargs="?", default=None, help=LATTICE_HELP)


def study_config(config_class, args: argparse.Namespace):
    """The study config from --config (TOML) or the defaults, LATTICE (when given, it replaces
    the config's ``lattice``), --seed and --smoke."""
    import dataclasses

    config = config_class.from_toml(args.config) if args.config else config_class()
    if args.lattice is not None:
        config = dataclasses.replace(config, lattice=str(args.lattice))
    if args.seed is not None and hasattr(config, "seed"):
        config = dataclasses.replace(config, seed=args.seed)
    return config.smoke() if args.smoke else config
