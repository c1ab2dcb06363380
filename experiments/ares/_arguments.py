"""Argument helpers shared by the ARES commands."""

from __future__ import annotations

import argparse
import re

# argparse takes "-2e-3" for an option unless it looks like a negative number; teach it
# scientific notation so that `--ch -2e-3` works as a physicist would type it.
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def accept_negative_numbers(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser._negative_number_matcher = _NEGATIVE_NUMBER
    return parser


def add_incoming_sigma_y(parser: argparse.ArgumentParser) -> None:
    """``--incoming-sigma-y`` (m), the same flag, default and meaning in every ARES command
    (the config key of ``ares study`` / ``ares calibrate`` is ``incoming_sigma_y``)."""
    from diffdesign.beamline.ares import INCOMING_PARAMETERS

    parser.add_argument(
        "--incoming-sigma-y", type=float, default=INCOMING_PARAMETERS["sigma_y"], metavar="M",
        help="vertical size of the incoming beam in m (default: %(default)g, the library's "
        "default ARES beam; `ares study` configs set incoming_sigma_y, 1e-4 by default)",
    )  # fmt: skip
