"""Read Elegant lattice files (``.lte``) natively, without pyAT.

:func:`read_elegant_file` parses the file and gives the same
:class:`~diffdesign.ring.description.RingDescription` of AT element dicts as pyAT's
``at.load_elegant(path, energy=...)`` converted by :func:`diffdesign.ring.from_pyat`
(field names, values, ``origin`` = the Elegant type, unknown parameters kept as lowercase
fields such as ``fitpoint``), with the differences listed below.

Syntax: names and keywords are case-insensitive (unquoted names are upper-cased, as
Elegant does; quoted names are kept as written); ``!`` starts a comment (so does ``#``
other than ``#include``, and a MAD-style ``;`` may end a statement); ``&`` at the end
of a line continues the statement on the next line; statements are

* ``NAME: TYPE, KEY=VALUE, ...``: an element; ``TYPE`` may be an element defined
  earlier, whose parameters are inherited and may be overridden;
* ``NAME: LINE=(ITEM, ...)``: a line; an item is an element or line name, ``-NAME``
  (reversed), ``N*NAME``, ``N*(ITEM, ...)``, ``-(ITEM, ...)``; lines may be nested and
  may name elements and lines defined later in the file;
* ``USE, NAME``: the line to expand (else the ``use_line`` argument, else the last line
  defined); ``RETURN`` ends the file;
* ``% RPN sto NAME``: defines an RPN variable; ``#include "FILE"`` reads FILE (relative
  to the including file) in place.

Values are numbers, quoted RPN expressions (``K1="kq 2 *"``: numbers, variables and the
operators ``+ - * / sqrt sqr pow exp ln sin cos tan asin acos atan abs chs pop swap sto``;
``x y pow`` is x**y; constants ``pi``, ``c_mks``, ``e_mks``, ``me_mks``), or strings for
the text parameters (``FILENAME``, ``MODE``, ``GROUP``, ...). RPN variable names are
case-sensitive, as in Elegant.

Element types, as pyAT maps them (``L``: length; ``N_KICKS``/4 or ``N_SLICES``
integration steps; ``TILT``, ``DX``, ``DY`` give R1/R2/T1/T2 on straight elements):

=====================================  ===============================================
Elegant                                AT element
=====================================  ===============================================
DRIF, DRIFT, EDRIFT                    Drift
MARK                                   Marker
KQUAD, QUAD, QUADRUPOLE (``K1``)       Quadrupole
KSEXT, SEXT, SEXTUPOLE (``K2``, K1)    Sextupole, PolynomB[2] = K2/2
KQUSE (``K1``, ``K2``)                 Multipole [0, K1, K2/2]
KOCT, OCTU, OCTUPOLE (``K3``)          Octupole, PolynomB[3] = K3/6
MULT, MULTIPOLE (``KNL``, ``ORDER``)   ThinMultipole (L = 0) or Multipole: KNL/ORDER!(/L)
CSBEND, SBEND, SBEN, CSBEN, CSRCSBEN   Dipole (``ANGLE``, ``E1``, ``E2``, ``K1`` ... ``K4``,
                                       ``HGAP`` -> FullGap = 2 HGAP, ``FINT``)
RBEN, RBEND, CRBEN, CRBEND             Dipole: arc length L/sinc(ANGLE/2), edges + ANGLE/2
HKICK, VKICK, KICKER                   Corrector (``KICK``; ``HKICK``, ``VKICK``)
RFCA, RFCW                             RFCavity (``VOLT``, ``FREQ``; cavity off:
                                       IdentityPass/DriftPass; HarmNumber from the length)
MONI, HMON, VMON, ...                  Monitor (a thick one: drift, monitor, drift)
ECOL, RCOL, SCRAPER, CSRDRIF           Drift (or Marker if L = 0)
WATCH, MALIGN, MAXAMP, CHARGE, ...     nothing (diagnostics and bookkeeping)
=====================================  ===============================================

Differences from pyAT, all where pyAT would silently change the optics: ``K1`` of a
KSEXT goes into PolynomB[1] (pyAT drops it); an RBEN with a negative angle keeps the
sign of its edge angles (pyAT adds ``|ANGLE|/2``); a MALIGN with offsets, a SOLENOID,
``FSE``, ``DZ``, ``ETILT``, ``PITCH``/``YAW``, ``HKICK``/``VKICK`` of magnets,
``EDGE1_EFFECTS=0``/``EDGE2_EFFECTS=0`` and ``TILT``/``DX``/``DY`` of bends are refused
(pyAT keeps a solenoid as a drift and the parameters as unused fields); ``N_KICKS`` < 4
gives one integration step, not zero; a bend with ``HGAP`` and no ``FINT`` has Elegant's
default FINT = 0.5 (pyAT: 0, Cheetah: 0.5); ``% ... sto`` variables work (pyAT 0.9.0 fails on
them); reversed elements swap their entrance and exit fields as pyAT's ``swap_faces``
does. Other element types are refused, naming the element, its type and its line.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .at_file import _Context, _element
from .description import RingDescription
from .json_format import MATRIX_FIELDS

__all__ = ["SUPPORTED_TYPES", "read_elegant_file"]

_SPEED_OF_LIGHT = 299792458.0

# Elegant type (and its aliases) -> canonical type (pyAT's element class names).
_ALIASES = {
    "DRIF": ("DRIF", "DRIFT", "EDRIFT"),
    "MARK": ("MARK",),
    "KQUAD": ("KQUAD", "QUAD", "QUADRUPOLE"),
    "KSEXT": ("KSEXT", "SEXT", "SEXTUPOLE"),
    "KQUSE": ("KQUSE",),
    "KOCT": ("KOCT", "OCTU", "OCTUPOLE"),
    "MULT": ("MULT", "MULTIPOLE"),
    "CSBEND": ("CSBEND", "SBEND", "SBEN", "CSBEN", "CSRCSBEN"),
    "RBEN": ("RBEN", "RBEND", "CRBEN", "CRBEND"),
    "KICKER": ("KICKER",),
    "HKICK": ("HKICK", "HKICKER"),
    "VKICK": ("VKICK", "VKICKER"),
    "RFCA": ("RFCA", "RFCW"),
    "MONI": ("MONI", "MONITOR"),
    "HMON": ("HMON", "HMONITOR"),
    "VMON": ("VMON", "VMONITOR"),
    # Collimators and CSR drifts: drifts (markers if L = 0) with no other fields, as pyAT.
    **{name: (name,) for name in ("ECOL", "RCOL", "SCRAPER", "CSRDRIF")},
    # Diagnostics and bookkeeping: no element (MALIGN and ENERGY checked below).
    **{
        name: (name,)
        for name in (
            "WATCH", "MALIGN", "MAXAMP", "CHARGE", "RECIRC", "SREFFECTS", "PFILTER",
            "ENERGY", "SCATTER", "WAKE",
        )
    },
}  # fmt: skip
_TYPES = {alias: canonical for canonical, names in _ALIASES.items() for alias in names}
_DRIFT_LIKE = ("ECOL", "RCOL", "SCRAPER", "CSRDRIF")
_SKIPPED = (
    "WATCH", "MALIGN", "MAXAMP", "CHARGE", "RECIRC", "SREFFECTS", "PFILTER", "ENERGY",
    "SCATTER", "WAKE",
)  # fmt: skip
#: The Elegant element types :func:`read_elegant_file` understands (aliases included).
SUPPORTED_TYPES = tuple(sorted(_TYPES))


def _type(written: str) -> str:
    """The canonical type of an element type as written: one of :data:`SUPPORTED_TYPES`, or
    a longer spelling of one of at least four letters (``CSRCSBEND`` of ``CSRCSBEN``: the
    supported names are Elegant's abbreviations); '' for none."""
    if written in _TYPES:
        return _TYPES[written]
    longer = [t for t in _TYPES if len(t) >= 4 and written.startswith(t)]
    return _TYPES[max(longer, key=len)] if longer else ""

# Parameters each type maps (lowercase); others become lowercase fields, as in pyAT.
_MAPPED = {
    "DRIF": {"l"},
    "MARK": set(),
    "KQUAD": {"l", "k1"},
    "KSEXT": {"l", "k1", "k2"},
    "KQUSE": {"l", "k1", "k2"},
    "KOCT": {"l", "k3"},
    "MULT": {"l", "knl", "order"},
    "CSBEND": {"l", "angle", "e1", "e2", "k1", "k2", "k3", "k4", "hgap", "fint"},
    "KICKER": {"l", "hkick", "vkick"},
    "HKICK": {"l", "kick"},
    "VKICK": {"l", "kick"},
    "RFCA": {"l", "volt", "freq"},
    "MONI": {"l"},
}
_MAPPED["RBEN"] = _MAPPED["CSBEND"]
_MAPPED["HMON"] = _MAPPED["VMON"] = _MAPPED["MONI"]
_COMMON = {"tilt", "dx", "dy", "n_kicks", "n_slices"}
# Parameters that change the optics but that the AT element cannot hold: refused unless 0.
_REFUSED = ("fse", "fse_dipole", "dz", "etilt", "pitch", "yaw", "epitch", "eyaw")
_MAGNET_KICKS = ("hkick", "vkick")
_BENDS = ("CSBEND", "RBEN")
_MALIGN_OFFSETS = ("dx", "dxp", "dy", "dyp", "dz", "dt", "dp", "de")
# Text parameters: their values stay strings (quoted or not).
_STRING_KEYS = {"filename", "mode", "group", "insert_from", "label", "units", "output"}
_REQUIRED = {"KQUAD": ("l",), "KSEXT": ("l",), "KQUSE": ("l",), "KOCT": ("l",)}
_REQUIRED["CSBEND"] = _REQUIRED["RBEN"] = ("l", "angle")


def _rpn_pow(a: float, b: float) -> float:
    return a**b


# RPN operators: name -> (number of arguments, function returning a list of results).
_RPN_OPERATORS: dict[str, tuple[int, Any]] = {
    "+": (2, lambda a, b: [a + b]),
    "-": (2, lambda a, b: [a - b]),
    "*": (2, lambda a, b: [a * b]),
    "/": (2, lambda a, b: [a / b]),
    "pow": (2, lambda a, b: [_rpn_pow(a, b)]),
    "swap": (2, lambda a, b: [b, a]),
    "pop": (1, lambda a: []),
    "chs": (1, lambda a: [-a]),
    "abs": (1, lambda a: [abs(a)]),
    "sqr": (1, lambda a: [a * a]),
    **{
        name: (1, lambda a, f=function: [f(a)])
        for name, function in (
            ("sqrt", math.sqrt), ("exp", math.exp), ("ln", math.log), ("sin", math.sin),
            ("cos", math.cos), ("tan", math.tan), ("asin", math.asin), ("acos", math.acos),
            ("atan", math.atan),
        )
    },
}  # fmt: skip
_RPN_CONSTANTS = {
    "pi": math.pi,
    "c_mks": _SPEED_OF_LIGHT,
    "e_mks": 1.602176634e-19,
    "me_mks": 9.1093837015e-31,
}
_INTEGER = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eEdD][+-]?\d+)?$")
_NAME = re.compile(r'^("[^"]*"|[^\s,:=()*"!&-][^\s,:=()*"!&]*)$')
_MAX_INCLUDE_DEPTH = 20


class _LineContext(_Context):
    """at_file's element context with Elegant's ``file:line: element 'NAME' (TYPE)``."""

    def place(self) -> str:
        return f"{self.path}:{self.where}: element {self.famname!r}"


@dataclass
class _Statement:
    text: str
    path: str
    line: int

    def error(self, message: str) -> ValueError:
        return ValueError(f"{self.path}:{self.line}: {message}")


@dataclass
class _Definition:
    """An element definition: its canonical type, what the file wrote, its parameters."""

    name: str
    kind: str
    written: str
    params: dict[str, Any]
    where: _Statement


@dataclass
class _LineItem:
    """A line entry: a name or a group, reversed or not, repeated ``count`` times."""

    name: str | None
    group: list[_LineItem] | None
    reverse: bool
    count: int


@dataclass
class _Parsed:
    elements: dict[str, _Definition] = field(default_factory=dict)
    lines: dict[str, tuple[list[_LineItem], _Statement]] = field(default_factory=dict)
    variables: dict[str, float] = field(default_factory=dict)
    use: tuple[str, _Statement] | None = None
    last_line: str | None = None


# --------------------------------------------------------------------------- text


def _strip_comment(text: str) -> str:
    """The line without its comment (``!``, or ``#`` other than ``#include``, as Cheetah's
    test lattices write them) and without a MAD-style ``;`` ending the statement."""
    quoted = False
    for i, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif not quoted and (char == "!" or (char == "#" and not text[i:].startswith("#include"))):
            text = text[:i]
            break
    return text.rstrip().removesuffix(";")


def _statements(text: str, path: str) -> list[_Statement]:
    """Whole statements: comments removed, ``&`` continuations joined."""
    out: list[_Statement] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _strip_comment(raw).strip()
        if line.count('"') % 2:
            raise ValueError(f"{path}:{number}: unbalanced quote '\"'")
        if not pending:
            start = number
        if line.endswith("&"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        joined = " ".join(pending).strip()
        pending = []
        if joined:
            out.append(_Statement(joined, path, start))
    if pending and " ".join(pending).strip():
        raise ValueError(f"{path}:{start}: the file ends inside a continued statement ('&')")
    return out


def _split(text: str, separator: str, statement: _Statement) -> list[str]:
    """Split at `separator` outside quotes and parentheses."""
    if '"' not in text and "(" not in text and ")" not in text:
        return [part.strip() for part in text.split(separator)]
    parts, depth, quoted, current = [], 0, False, []
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth < 0:
                raise statement.error(f"unbalanced parentheses: ')' without '(' in {text!r}")
        if char == separator and depth == 0 and not quoted:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    if depth:
        raise statement.error(f"unbalanced parentheses: '(' without ')' in {text!r}")
    parts.append("".join(current).strip())
    return parts


def _name(text: str, statement: _Statement, what: str = "name") -> str:
    text = text.strip()
    if not _NAME.match(text):
        raise statement.error(f"invalid {what} {text!r}")
    return text[1:-1] if text.startswith('"') else text.upper()


# --------------------------------------------------------------------------- values


def _number(text: str) -> int | float | None:
    if _INTEGER.match(text):
        return int(text)
    if _NUMBER.match(text):
        return float(text.replace("d", "e").replace("D", "e"))
    return None


def _rpn(expression: str, variables: dict[str, float], statement: _Statement) -> list[float]:
    """Evaluate an RPN expression; ``sto NAME`` stores the top of the stack in `variables`.

    Returns the stack.
    """
    stack: list[float] = []
    tokens = expression.split()
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token == "sto":
            if index == len(tokens) or not stack:
                raise statement.error(f"RPN {expression!r}: 'sto' needs a value and a name")
            variables[tokens[index]] = stack[-1]
            index += 1
            continue
        value = _number(token)
        if value is not None:
            stack.append(float(value))
        elif token in variables:
            stack.append(variables[token])
        elif token in _RPN_CONSTANTS:
            stack.append(_RPN_CONSTANTS[token])
        elif token in _RPN_OPERATORS:
            count, function = _RPN_OPERATORS[token]
            if len(stack) < count:
                raise statement.error(
                    f"RPN {expression!r}: {token!r} needs {count} value(s) on the stack"
                )
            arguments = stack[len(stack) - count :]
            del stack[len(stack) - count :]
            try:
                stack.extend(function(*arguments))
            except (ValueError, ZeroDivisionError, OverflowError) as err:
                raise statement.error(f"RPN {expression!r}: {token!r} failed: {err}") from None
        else:
            similar = [name for name in variables if name.lower() == token.lower()]
            hint = (
                f" (variables are case-sensitive: did you mean {similar[0]!r}?)" if similar else ""
            )
            raise statement.error(
                f"RPN {expression!r}: unknown variable or operator {token!r}{hint}"
            )
    return stack


def _value(key: str, text: str, variables: dict[str, float], statement: _Statement) -> Any:
    quoted = text.startswith('"') and text.endswith('"') and len(text) >= 2
    if key in _STRING_KEYS:
        return text[1:-1] if quoted else text
    if quoted:
        stack = _rpn(text[1:-1], variables, statement)
        if len(stack) != 1:
            raise statement.error(
                f"{key.upper()}={text}: the RPN expression leaves {len(stack)} values, not 1"
            )
        value = stack[0]
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    number = _number(text)
    if number is None:
        raise statement.error(
            f"{key.upper()}={text}: not a number (write RPN expressions in double quotes)"
        )
    return number


# --------------------------------------------------------------------------- statements


def _parse_line(text: str, statement: _Statement) -> list[_LineItem]:
    """The items of ``(A, -B, 2*C, 3*(D, E))`` (the outer parentheses included)."""
    text = text.strip()
    if not (text.startswith("(") and text.endswith(")")):
        raise statement.error(f"LINE must be a list in parentheses, LINE=(A, B, ...); got {text!r}")
    items = []
    for part in _split(text[1:-1], ",", statement):
        if not part:
            raise statement.error(f"empty item in LINE {text!r}")
        items.append(_parse_item(part, statement))
    return items


def _parse_item(part: str, statement: _Statement) -> _LineItem:
    reverse, count = False, 1
    rest = part.strip()
    if rest.startswith("-"):
        reverse, rest = True, rest[1:].strip()
    factors = _split(rest, "*", statement)
    if len(factors) > 2:
        raise statement.error(f"invalid LINE item {part!r} (one N* at most)")
    if len(factors) == 2:
        factor, rest = factors
        if not _INTEGER.match(factor) or int(factor) < 0:
            raise statement.error(f"invalid multiplicity {factor!r} in LINE item {part!r}")
        count = int(factor)
        if rest.startswith("-"):
            reverse, rest = not reverse, rest[1:].strip()
    if rest.startswith("("):
        return _LineItem(None, _parse_line(rest, statement), reverse, count)
    return _LineItem(_name(rest, statement, "name in LINE"), None, reverse, count)


def _define(label: str, body: str, statement: _Statement, parsed: _Parsed) -> None:
    name = _name(label, statement, "label")
    parts = _split(body, ",", statement)
    head = parts[0]
    key, _, rest = head.partition("=")
    if rest and key.strip().upper() == "LINE":
        if len(parts) > 1:
            raise statement.error(f"unexpected text after LINE=(...): {', '.join(parts[1:])!r}")
        if name in parsed.lines or name in parsed.elements:
            warnings.warn(f"{statement.path}:{statement.line}: {name!r} redefined", stacklevel=4)
            parsed.elements.pop(name, None)
        parsed.lines[name] = (_parse_line(rest, statement), statement)
        parsed.last_line = name
        return
    written = _name(head, statement, "element type")
    if _type(written):
        kind, params = _type(written), {}
    elif written in parsed.elements:  # inheritance: NAME: OTHER, KEY=VALUE
        parent = parsed.elements[written]
        kind, written, params = parent.kind, parent.written, dict(parent.params)
    elif written in parsed.lines:
        raise statement.error(f"{name!r}: {written!r} is a LINE, not an element type")
    else:  # refused by name, type and line if a used line places it
        kind, params = "", {}
    for part in parts[1:]:
        if not part:
            continue
        key, equals, value = part.partition("=")
        key = key.strip().lower()
        if not equals or not key or not value.strip():
            raise statement.error(f"element {name!r}: expected KEY=VALUE; got {part!r}")
        if kind in _SKIPPED or not kind:
            params[key] = value.strip()  # never evaluated
        else:
            params[key] = _value(key, value.strip(), parsed.variables, statement)
    if name in parsed.elements or name in parsed.lines:
        warnings.warn(f"{statement.path}:{statement.line}: {name!r} redefined", stacklevel=4)
        parsed.lines.pop(name, None)
    parsed.elements[name] = _Definition(name, kind, written, params, statement)


def _include(statement: _Statement, parsed: _Parsed, depth: int) -> None:
    target = statement.text[len("#include") :].strip().lstrip(":").strip()
    if target.startswith('"') and target.endswith('"') and len(target) >= 2:
        target = target[1:-1]
    if not target:
        raise statement.error("#include needs a file name")
    path = Path(statement.path).parent / target
    if depth >= _MAX_INCLUDE_DEPTH:
        raise statement.error(f"#include nested more than {_MAX_INCLUDE_DEPTH} deep (a loop?)")
    if not path.is_file():
        raise statement.error(f"#include: file {str(path)!r} does not exist")
    _parse_file(path, parsed, depth + 1)


def _parse_file(path: Path, parsed: _Parsed, depth: int = 0) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}:1: not a text file in UTF-8 (byte {err.start})") from None
    for statement in _statements(text, str(path)):
        stripped = statement.text
        upper = stripped.upper()
        if stripped.startswith("%"):
            _rpn(stripped[1:], parsed.variables, statement)
        elif upper.startswith("#INCLUDE"):
            _include(statement, parsed, depth)
        elif upper == "RETURN":
            return
        else:
            parts = _split(stripped, ":", statement)
            if len(parts) > 1:
                _define(parts[0], ":".join(parts[1:]), statement, parsed)
                continue
            words = _split(stripped, ",", statement)
            if words[0].upper() == "USE" and len(words) == 2:
                parsed.use = (_name(words[1], statement, "line name"), statement)
            else:
                raise statement.error(
                    f"cannot read the statement {stripped!r} (expected NAME: TYPE, ...; "
                    "NAME: LINE=(...); USE, NAME; % RPN; #include; RETURN)"
                )


# --------------------------------------------------------------------------- elements


def _polynom(values: list[float]) -> np.ndarray:
    return np.array([values], dtype=float)


def _tilt_shift(fields: dict[str, Any], tilt: float, dx: float, dy: float) -> None:
    """R1/R2/T1/T2 of a straight element rolled by `tilt` and displaced by (dx, dy)."""
    if tilt == 0.0 and dx == 0.0 and dy == 0.0:
        return
    c, s = math.cos(tilt), math.sin(tilt)
    rotation = np.eye(6)
    rotation[0:4, 0:4] = [[c, 0, s, 0], [0, c, 0, s], [-s, 0, c, 0], [0, -s, 0, c]]
    shift = np.array([dx, 0.0, dy, 0.0, 0.0, 0.0])
    fields.update(R1=rotation, R2=rotation.T, T1=_polynom(list(-shift)), T2=_polynom(list(shift)))


def _convert(definition: _Definition) -> list[dict[str, Any]]:
    """The AT elements of one Elegant element (none for diagnostics)."""
    kind, params, statement = definition.kind, dict(definition.params), definition.where
    context = _LineContext(statement.path, str(statement.line), definition.written, definition.name)

    def number(key: str, default: float = 0.0) -> float:
        value = params.pop(key, default)
        if isinstance(value, str) or not math.isfinite(value):
            raise context.error(f"{key.upper()} must be a finite number; got {value!r}")
        return float(value)

    if not kind:
        raise context.error(
            f"unknown element type {definition.written!r} (not one of the supported types "
            f"{', '.join(SUPPORTED_TYPES)}, nor an element defined before it)"
        )
    if kind in _SKIPPED:
        checked = _MALIGN_OFFSETS if kind == "MALIGN" else ()
        if kind == "ENERGY":
            checked = ("central_energy", "central_momentum")
        for key in checked:
            if key in params and _number(params[key].strip('"')) not in (0, None):
                raise context.error(
                    f"{key.upper()}={params[key]} is not supported ({kind} is read as nothing)"
                )
        return []
    if kind in _DRIFT_LIKE:
        length = number("l")
        cls = "Marker" if length == 0.0 else "Drift"
        return [
            _element(cls, {"FamName": definition.name, "Length": length, "origin": kind}, context)
        ]
    for key in _REQUIRED.get(kind, ()):
        if key not in params:
            raise context.error(f"missing parameter {key.upper()} (required for {kind})")
    refused = [*_REFUSED, *(() if kind in ("KICKER", "HKICK", "VKICK") else _MAGNET_KICKS)]
    if kind in _BENDS:
        refused += ["tilt", "dx", "dy"]
    for key in refused:
        if key in params and params[key] != 0:
            raise context.error(
                f"{key.upper()}={params[key]} is not supported (the AT element cannot hold it)"
            )
    if kind in _BENDS:
        for key in ("edge1_effects", "edge2_effects"):
            if params.get(key, 1) == 0:
                raise context.error(f"{key.upper()}=0 is not supported (AT always has edges)")
    tilt, dx, dy = number("tilt"), number("dx"), number("dy")
    fields: dict[str, Any] = {"FamName": definition.name, "origin": kind}
    if "n_kicks" in params:
        fields["NumIntSteps"] = max(1, int(number("n_kicks") / 4))
    if "n_slices" in params:
        fields["NumIntSteps"] = int(number("n_slices"))
    mapped = {key: number(key) for key in _MAPPED[kind] if key in params and key != "order"}
    order = params.pop("order", 1)
    for key, value in params.items():
        fields.setdefault(key, value)  # unknown parameters: kept as lowercase fields (pyAT)
    length = mapped.get("l", 0.0)
    fields["Length"] = length
    elements: list[tuple[str, dict[str, Any]]]
    if kind == "DRIF":
        elements = [("Drift", fields)]
    elif kind == "MARK":
        elements = [("Marker", fields)]
    elif kind == "KQUAD":
        elements = [("Quadrupole", {**fields, "K": mapped.get("k1", 0.0)})]
    elif kind == "KSEXT":
        polynom_b = [0.0, mapped.get("k1", 0.0), mapped.get("k2", 0.0) / 2]
        elements = [("Sextupole", {**fields, "PolynomB": _polynom(polynom_b)})]
    elif kind == "KQUSE":
        polynom_b = [0.0, mapped.get("k1", 0.0), mapped.get("k2", 0.0) / 2]
        multipole = {**fields, "PolynomA": _polynom([0.0] * 3), "PolynomB": _polynom(polynom_b)}
        elements = [("Multipole", multipole)]
    elif kind == "KOCT":
        polynom_b = [0.0, 0.0, 0.0, mapped.get("k3", 0.0) / 6]
        octupole = {**fields, "PolynomA": _polynom([0.0] * 4), "PolynomB": _polynom(polynom_b)}
        elements = [("Octupole", octupole)]
    elif kind == "MULT":
        elements = [_mult(fields, mapped, order, context)]
    elif kind in _BENDS:
        elements = [_bend(kind, fields, mapped)]
    elif kind in ("KICKER", "HKICK", "VKICK"):
        kick = mapped.get("kick", 0.0)
        kicks = {
            "KICKER": [mapped.get("hkick", 0.0), mapped.get("vkick", 0.0)],
            "HKICK": [kick, 0.0],
            "VKICK": [0.0, kick],
        }[kind]
        elements = [("Corrector", {**fields, "KickAngle": _polynom(kicks)})]
    elif kind == "RFCA":
        if "freq" not in mapped:
            raise context.error("missing parameter FREQ (required for RFCA)")
        cavity = {
            **fields,
            "Voltage": mapped.get("volt", 0.0),
            "Frequency": mapped["freq"],
            "HarmNumber": 0,
            "PassMethod": "IdentityPass" if length == 0.0 else "DriftPass",
        }
        elements = [("RFCavity", cavity)]
    else:  # MONI, HMON, VMON
        if length == 0.0:
            elements = [("Monitor", fields)]
        else:
            half = {"FamName": definition.name, "Length": 0.5 * length, "origin": kind}
            monitor = {**fields, "Length": 0.0}
            elements = [("Drift", half), ("Monitor", monitor), ("Drift", dict(half))]
    out = []
    for cls, element_fields in elements:
        _tilt_shift(element_fields, tilt, dx, dy)
        out.append(_element(cls, element_fields, context))
    return out


def _mult(
    fields: dict[str, Any], mapped: dict[str, float], order: Any, context: _Context
) -> tuple[str, dict[str, Any]]:
    if isinstance(order, str) or order != int(order) or order < 0:
        raise context.error(f"ORDER must be an integer >= 0; got {order!r}")
    order = int(order)
    polynom_b = [0.0] * (order + 1)
    strength = mapped.get("knl", 0.0) / math.factorial(order)
    length = fields["Length"]
    polynom_b[order] = strength if length == 0.0 else strength / length
    fields = {**fields, "PolynomA": _polynom([0.0] * (order + 1)), "PolynomB": _polynom(polynom_b)}
    if length == 0.0:
        return "ThinMultipole", fields
    return "Multipole", fields


def _bend(kind: str, fields: dict[str, Any], mapped: dict[str, float]) -> tuple[str, dict]:
    angle = mapped["angle"]
    length = fields["Length"]
    e1, e2 = mapped.get("e1", 0.0), mapped.get("e2", 0.0)
    if kind == "RBEN":
        half = 0.5 * angle
        length = length * half / math.sin(half) if half != 0.0 else length
        e1, e2 = e1 + half, e2 + half
    k1 = mapped.get("k1", 0.0)
    bend = {
        **fields,
        "Length": length,
        "BendingAngle": angle,
        "EntranceAngle": e1,
        "ExitAngle": e2,
        "K": k1,
    }
    higher = [mapped.get(f"k{n}", 0.0) / math.factorial(n) for n in (2, 3, 4)]
    if any(higher):
        bend["PolynomB"] = _polynom([0.0, k1, *higher])
    if "hgap" in mapped:
        fint = mapped.get("fint", 0.5)  # Elegant's default (pyAT's is 0)
        bend.update(FullGap=2.0 * mapped["hgap"], FringeInt1=fint, FringeInt2=fint)
    return "Dipole", bend


# --------------------------------------------------------------------------- lines

_FACES = (
    ("EntranceAngle", "ExitAngle"),
    ("FringeInt1", "FringeInt2"),
    ("FringeBendEntrance", "FringeBendExit"),
    ("FringeQuadEntrance", "FringeQuadExit"),
)


def _copy(element: dict[str, Any], reverse: bool) -> dict[str, Any]:
    out = {
        key: [list(row) for row in value]
        if key in MATRIX_FIELDS
        else list(value)
        if isinstance(value, list)
        else value
        for key, value in element.items()
    }
    if reverse:  # pyAT's swap_faces: entrance and exit fields (not T1/T2/R1/R2) swap
        for entrance, exit_ in _FACES:
            if entrance in element or exit_ in element:
                out.pop(entrance, None)
                out.pop(exit_, None)
                if exit_ in element:
                    out[entrance] = element[exit_]
                if entrance in element:
                    out[exit_] = element[entrance]
    return out


@dataclass
class _Expander:
    parsed: _Parsed
    converted: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    out: list[dict[str, Any]] = field(default_factory=list)

    def line(self, name: str, reverse: bool, stack: list[str], where: _Statement) -> None:
        items, statement = self.parsed.lines[name]
        if name in stack:
            cycle = " -> ".join([*stack[stack.index(name) :], name])
            raise statement.error(f"LINE {name!r} contains itself ({cycle})")
        stack.append(name)
        self.items(items, reverse, stack, statement)
        stack.pop()

    def items(
        self, items: list[_LineItem], reverse: bool, stack: list[str], where: _Statement
    ) -> None:
        for item in reversed(items) if reverse else items:
            flip = reverse != item.reverse
            for _ in range(item.count):
                if item.group is not None:
                    self.items(item.group, flip, stack, where)
                elif item.name in self.parsed.lines:
                    self.line(item.name, flip, stack, where)
                elif item.name in self.parsed.elements:
                    self.element(item.name, flip)
                else:
                    raise where.error(
                        f"LINE {stack[-1]!r}: {item.name!r} is neither an element nor a line "
                        "defined in the file"
                    )

    def element(self, name: str, reverse: bool) -> None:
        if name not in self.converted:
            self.converted[name] = _convert(self.parsed.elements[name])
        elements = self.converted[name]
        self.out.extend(_copy(e, reverse) for e in (reversed(elements) if reverse else elements))


def read_elegant_file(
    path: str | Path, *, energy: float, use_line: str | None = None
) -> RingDescription:
    """Read an Elegant lattice file (``.lte``) into a ring description.

    Args:
        path: the ``.lte`` file.
        energy: the reference energy, eV (Elegant files do not hold it).
        use_line: the LINE to expand (case-insensitive); default: the file's
            ``USE, NAME`` statement, else the last LINE defined.

    Returns:
        The :class:`RingDescription`: the expanded line's elements (see the module
        docstring for the mapping), ``energy``, periodicity 1, particle
        ``"relativistic"``, the line's name; ``extra["harmonic_number"]`` when the line has
        RF cavities (their HarmNumber: frequency over the relativistic revolution frequency
        of the line, truncated as pyAT does).

    Raises:
        ValueError: ``"<file>:<line>: ..."`` naming what is wrong: syntax (unbalanced
            parentheses or quotes, a statement that is not Elegant), an unknown element
            type or parameter value, an undefined name in a line, an unknown RPN variable,
            a recursive line, no line to use; an element type or parameter that is not
            mapped (naming the element, its type and line); a non-UTF-8 or empty file.

    Example:
        >>> ring = read_elegant_file("comm-ring.lte", energy=3e9)  # doctest: +SKIP
        >>> ring.name, len(ring.elements)  # doctest: +SKIP
        ('RING', 3570)
    """
    path = Path(path)
    if not (isinstance(energy, int | float) and math.isfinite(energy) and energy > 0):
        raise ValueError(f"energy must be a finite energy > 0 eV; got {energy!r}")
    if not path.is_file():
        raise ValueError(f"elegant file {str(path)!r} does not exist")
    parsed = _Parsed()
    _parse_file(path, parsed)
    if use_line is not None:
        name = use_line.upper()
        if name not in parsed.lines:
            known = ", ".join(sorted(parsed.lines)) or "none"
            raise ValueError(f"{path}: no LINE named {use_line!r}; the lines are: {known}")
        where = parsed.lines[name][1]
    elif parsed.use is not None:
        name, where = parsed.use
        if name not in parsed.lines:
            raise where.error(f"USE, {name}: there is no LINE {name!r}")
    elif parsed.last_line is not None:
        name = parsed.last_line
        where = parsed.lines[name][1]
    elif not parsed.elements:
        raise ValueError(f"{path}:1: the file defines no elements and no LINE (empty?)")
    else:
        raise ValueError(f"{path}:1: the file defines no LINE to use (NAME: LINE=(...))")
    expander = _Expander(parsed)
    expander.line(name, False, [], where)
    elements = expander.out
    if not elements:
        raise where.error(f"LINE {name!r} has no elements")
    extra: dict[str, Any] = {}
    cavities = [e for e in elements if e["Class"] == "RFCavity"]
    if cavities and any(e["Length"] for e in elements):
        circumference = sum(e["Length"] for e in elements)
        revolution = _SPEED_OF_LIGHT / circumference
        for cavity in cavities:
            cavity["HarmNumber"] = int(cavity["Frequency"] / revolution)
            cavity["Energy"] = float(energy)
        extra["harmonic_number"] = cavities[0]["HarmNumber"]
    return RingDescription(
        elements=elements,
        energy=float(energy),
        periodicity=1,
        particle="relativistic",
        name=name,
        source=str(path),
        extra=extra,
    )
