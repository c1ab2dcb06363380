"""Example data shipped with diffdesign: files a user (or the CLI) can run on at once.

- ``laminar_flow_example.h5``: three angles of synthetic laminar-flow two-time data in the
  APS-U layout (see :mod:`diffdesign.xpcs.io`), the truth in its root attributes; remade by
  ``python -m diffdesign.xpcs.examples.make_example``.
- ``laminar_flow_example.toml``: a config whose ``[data]`` table reads it.
- ``two_component_example.h5`` / ``.toml``: four angles of synthetic two-component
  (heterodyne) data and its config (same script).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

EXAMPLES = (
    "laminar_flow_example.h5",
    "laminar_flow_example.toml",
    "two_component_example.h5",
    "two_component_example.toml",
)


def example_path(name: str) -> Path:
    """The path of a packaged example file, e.g. ``example_path("laminar_flow_example.h5")``.

    Raises:
        ValueError: ``name`` is not one of :data:`EXAMPLES`, or the file is missing from the
            installation.
    """
    if name not in EXAMPLES:
        raise ValueError(f"unknown example {name!r}; available: {list(EXAMPLES)}")
    path = Path(str(resources.files(__name__).joinpath(name)))
    if not path.is_file():
        raise ValueError(
            f"example {name!r} is missing from the installation (expected at {str(path)!r}); "
            "rebuild it with `python -m diffdesign.xpcs.examples.make_example`"
        )
    return path


__all__ = ["EXAMPLES", "example_path"]
