"""Frozen config dataclasses read from TOML, shared by the studies of every domain."""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar


class TomlConfig:
    """Reading a frozen config dataclass from TOML: every key optional, unknown keys are
    errors that list the known ones, lists become tuples, ints are accepted for floats.

    A field whose default is None accepts the types listed for it in :attr:`OPTIONAL`
    (e.g. ``{"n_shards": int}``); a field named ``lattice`` accepts a string."""

    #: fields replaced by :meth:`smoke` (tiny sizes that only check that the study runs).
    SMOKE: ClassVar[dict[str, Any]] = {}
    #: accepted types of the fields whose default is None.
    OPTIONAL: ClassVar[dict[str, type | tuple[type, ...]]] = {"lattice": str}

    @classmethod
    def from_toml(cls, path: str | Path):
        path = Path(path)
        if path.suffix != ".toml":
            raise ValueError(f"study config must be a .toml file; got {path.name!r}")
        try:
            content = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ValueError(
                f"cannot read study config {str(path)!r} (UTF-8 TOML): {error}"
            ) from None
        return cls.from_mapping(content, str(path))

    @classmethod
    def from_mapping(cls, content: Mapping[str, Any], where: str = "config"):
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(content) - set(known))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in {where}; known: {sorted(known)}")
        values = {}
        for name, value in content.items():
            default = known[name].default
            if isinstance(value, list):
                value = tuple(value)
            if (
                isinstance(default, float)
                and isinstance(value, int)
                and not isinstance(value, bool)
            ):
                value = float(value)
            if isinstance(default, tuple) and value and default and isinstance(default[0], float):
                value = tuple(
                    float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value
                )
            if default is None and name in cls.OPTIONAL:
                accepted = cls.OPTIONAL[name]
                expected = (accepted if isinstance(accepted, tuple) else (accepted,)) + (
                    type(None),
                )
                expected_name = " or ".join(t.__name__ for t in expected[:-1])
                if float in expected and isinstance(value, int) and not isinstance(value, bool):
                    value = float(value)
            else:
                expected, expected_name = type(default), type(default).__name__
            if not isinstance(value, expected) or (
                isinstance(value, bool) and bool not in _types(expected)
            ):
                raise ValueError(
                    f"{name} in {where} must be of type {expected_name}; got {value!r}"
                )
            if isinstance(value, float) and math.isnan(value):
                raise ValueError(f"{name} in {where} must be a number, not nan")
            if isinstance(default, tuple) and default and isinstance(value, tuple):
                _check_elements(name, value, type(default[0]), where)
            values[name] = value
        return cls(**values)

    def smoke(self):
        """The same config with the tiny sizes of :attr:`SMOKE` (a run that checks wiring)."""
        return dataclasses.replace(self, **self.SMOKE)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _types(expected: type | tuple[type, ...]) -> tuple[type, ...]:
    return expected if isinstance(expected, tuple) else (expected,)


def _check_elements(name: str, value: tuple, kind: type, where: str) -> None:
    """The entries of a list field must be of its default's entry type (numbers not NaN)."""
    if kind not in (int, float, str):
        return
    for entry in value:
        if kind is str:
            fits, wanted = isinstance(entry, str), "strings"
        elif kind is int:
            fits, wanted = isinstance(entry, int) and not isinstance(entry, bool), "integers"
        else:
            fits = isinstance(entry, int | float) and not isinstance(entry, bool)
            wanted = "numbers"
        if not fits:
            raise ValueError(f"{name} in {where} must be a list of {wanted}; got {list(value)!r}")
        if isinstance(entry, float) and math.isnan(entry):
            raise ValueError(f"{name} in {where} must be numbers, not nan; got {list(value)!r}")


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v, where) for v in value) + "]"
    if isinstance(value, Mapping):
        items = [f"{json.dumps(str(k))} = {_toml_value(v, where)}" for k, v in value.items()]
        return "{" + ", ".join(items) + "}"
    raise ValueError(f"{where}: cannot write {value!r} ({type(value).__name__}) to TOML")


def to_toml(mapping: Mapping[str, Any]) -> str:
    """TOML text of a mapping of numbers, strings, booleans, lists and tables (tables as
    inline tables), which :meth:`TomlConfig.from_toml` reads back to the same values."""
    lines = [f"{json.dumps(str(k))} = {_toml_value(v, str(k))}\n" for k, v in mapping.items()]
    return "".join(lines)
