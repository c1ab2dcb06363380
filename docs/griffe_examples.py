"""A Griffe extension for the API pages: adapt the package's docstrings to Markdown.

The docstrings are Google-style with reStructuredText roles in the prose. Two things would
render badly as they are:

- ``Example:`` headings: Griffe's Google parser knows the plural ``Examples:`` only, and
  would render the singular as an admonition whose ``>>>`` lines Markdown reads as nested
  quotes. They are read as ``Examples:`` sections, so the lines render as code.
- roles such as ``:func:`run``` or ``:class:`~diffdesign.core.Param```: they become inline
  code (the name after a ``~`` shortened to its last part, as Sphinx shows it).

Loaded by mkdocs.yml (``extensions`` of the mkdocstrings Python handler); it changes only
the text handed to the renderer, nothing in the package.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_HEADING = re.compile(r"^([ \t]*)Example:[ \t]*$", re.M)
_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|obj|exc|const|ref):`(~?)([^`<>]+)`")


def _role(match: re.Match) -> str:
    short, target = match.groups()
    name = target.rsplit(".", 1)[-1] if short else target
    return f"`{name}`"


class ExampleSections(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            text = _HEADING.sub(r"\1Examples:", obj.docstring.value)
            obj.docstring.value = _ROLE.sub(_role, text)
