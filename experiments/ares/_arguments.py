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
