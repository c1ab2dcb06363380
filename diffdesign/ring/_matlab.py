"""A small, safe reader for the MATLAB literal syntax that AT lattice files use.

AT (Accelerator Toolbox) writes a lattice as a MATLAB function returning a cell array of
element-constructor calls::

    function ring = esrf()
    ring = {...
        atdrift('SDHI', 3.0526);...
        atquadrupole('QF2', 0.94341, 0.39100749, 'StrMPoleSymplectic4Pass', 'NumIntSteps', 20);...
    };
        function v=True()
            v=true;
        end
    end

This module turns such text into plain Python values without evaluating anything: it
tokenises, parses the subset below and rejects everything else with an error that names
the file, the line and what was expected.

Supported syntax:

* an optional header ``function ring = name()`` (or a script without one), closed by an
  optional ``end``;
* one assignment ``ring = {...};`` of a cell array (one row or one column, items separated
  by ``,``, ``;``, new lines or ``...`` continuations), optionally transposed (``}'``);
* calls ``name(arg, ...)``; ``struct('field', value, ...)`` becomes a ``dict``;
* strings in single quotes (``''`` is a quote) or double quotes (``""`` is a quote);
* numbers (``3``, ``-0.5``, ``1e-3``, ``.5``, ``Inf``, ``NaN``), ``true``/``false``;
* matrices ``[1 2 3]``, ``[1, 2; 3, 4]``, ``[0;0;0]``, ``[[1 2];[3 4]]``, with ``'``
  transposing them;
* nested cell arrays ``{1, 'a'}`` (as lists);
* comments (``%`` to the end of the line, ``%{ ... %}`` blocks);
* local or nested functions that return a literal, e.g. ``function v=True() v=true; end``;
  a call to one (``True()``) is replaced by its value.

Arithmetic, variables other than those local functions, indexing and any other statement
are refused: AT's own writers never produce them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Call", "LatticeFile", "MatlabSyntaxError", "parse_lattice_file"]


class MatlabSyntaxError(ValueError):
    """A MATLAB lattice file uses syntax outside the supported subset (or is malformed)."""


@dataclass(frozen=True)
class Call:
    """A call ``name(args...)`` left for the caller to interpret (element constructors).

    Attributes:
        name: the function name as written, e.g. ``"atquadrupole"``.
        args: the parsed argument values (str, int, float, bool, 2-D float ndarray for a
            matrix, dict for a struct, list for a cell array, or a nested :class:`Call`).
        line: 1-based line of the name in the file.
        column: 1-based column of the name.
    """

    name: str
    args: tuple[Any, ...]
    line: int
    column: int


@dataclass(frozen=True)
class LatticeFile:
    """The content of an AT MATLAB lattice file.

    Attributes:
        path: the file name used in messages.
        function_name: the name in the ``function ring = name()`` header (``None`` for a
            script without a header).
        variable: the assigned variable (``"ring"``).
        entries: the items of the cell array, in order.
    """

    path: str
    function_name: str | None
    variable: str
    entries: tuple[Any, ...]


# --------------------------------------------------------------------------- tokeniser

_NEWLINE, _NAME, _NUMBER, _STRING, _OP, _EOF = "newline", "name", "number", "string", "op", "eof"


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str  # for strings: the decoded value
    line: int
    column: int
    space_before: bool


_SKIP = re.compile(r"[ \t\f\r]+")
_CONTINUATION = re.compile(r"\.\.\.[^\n]*(?:\n|$)")
_COMMENT = re.compile(r"%[^\n]*")
_BLOCK_OPEN = re.compile(r"[ \t]*%\{[ \t\r]*(?:\n|$)")
_BLOCK_CLOSE = re.compile(r"^[ \t]*%\}[ \t\r]*$", re.MULTILINE)
# A '.' that starts a '...' continuation is not part of the number before it.
_NUMBER_RE = re.compile(r"(?:\d+(?:\.(?!\.\.)\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_NAME_RE = re.compile(r"[A-Za-z_]\w*")
_SINGLE_QUOTED = re.compile(r"'((?:[^'\n]|'')*)'")
_DOUBLE_QUOTED = re.compile(r'"((?:[^"\n]|"")*)"')
_OPERATORS = set("()[]{},;=+-*/\\^:.&|~<>@!'")
_CLOSERS = {")", "]", "}", "'"}


def _describe(token: _Token) -> str:
    if token.kind == _EOF:
        return "the end of the file"
    if token.kind == _NEWLINE:
        return "the end of the line"
    if token.kind == _STRING:
        return f"the string {token.text!r}"
    return f"{token.text!r}"


class _Tokeniser:
    def __init__(self, text: str, path: str):
        self.text = text
        self.path = path
        self.line = 1
        self.line_start = 0

    def error(self, pos: int, message: str) -> MatlabSyntaxError:
        column = pos - self.line_start + 1
        return MatlabSyntaxError(f"{self.path}, line {self.line}, column {column}: {message}")

    def _advance_lines(self, start: int, end: int) -> None:
        count = self.text.count("\n", start, end)
        if count:
            self.line += count
            self.line_start = self.text.rindex("\n", start, end) + 1

    def tokens(self) -> list[_Token]:
        text, out = self.text, []
        pos, space = 0, False
        at_line_start = True
        while pos < len(text):
            char = text[pos]
            column = pos - self.line_start + 1
            if char == "\n":
                out.append(_Token(_NEWLINE, "\n", self.line, column, space))
                pos += 1
                self.line += 1
                self.line_start = pos
                space, at_line_start = False, True
                continue
            if at_line_start and (block := _BLOCK_OPEN.match(text, pos)):
                close = _BLOCK_CLOSE.search(text, block.end())
                if close is None:
                    raise self.error(pos, "unterminated block comment: '%{' has no '%}'")
                self._advance_lines(pos, close.end())
                pos, space = close.end(), True
                continue
            at_line_start = False
            if match := _SKIP.match(text, pos):
                pos, space = match.end(), True
                continue
            if text.startswith("...", pos):
                match = _CONTINUATION.match(text, pos)
                self._advance_lines(pos, match.end())
                pos, space, at_line_start = match.end(), True, True
                continue
            if char == "%":
                pos = _COMMENT.match(text, pos).end()
                continue
            previous = out[-1] if out else None
            if (
                char == "'"
                and not space
                and previous is not None
                and (
                    previous.kind in (_NAME, _NUMBER)
                    or (previous.kind == _OP and previous.text in _CLOSERS)
                )
            ):
                out.append(_Token(_OP, "'", self.line, column, space))  # transpose
                pos, space = pos + 1, False
                continue
            if char in "'\"":
                regex = _SINGLE_QUOTED if char == "'" else _DOUBLE_QUOTED
                match = regex.match(text, pos)
                if match is None:
                    raise self.error(
                        pos, f"unterminated string: expected a closing {char} on the same line"
                    )
                value = match.group(1).replace(char * 2, char)
                out.append(_Token(_STRING, value, self.line, column, space))
                pos, space = match.end(), False
                continue
            if match := _NUMBER_RE.match(text, pos):
                end = match.end()
                if end < len(text) and (text[end].isalnum() or text[end] == "_"):
                    raise self.error(
                        pos, f"malformed number {text[pos : end + 1]!r}: expected a real number"
                    )
                out.append(_Token(_NUMBER, match.group(), self.line, column, space))
                pos, space = end, False
                continue
            if match := _NAME_RE.match(text, pos):
                out.append(_Token(_NAME, match.group(), self.line, column, space))
                pos, space = match.end(), False
                continue
            if char in _OPERATORS:
                out.append(_Token(_OP, char, self.line, column, space))
                pos, space = pos + 1, False
                continue
            raise self.error(pos, f"unexpected character {char!r}")
        out.append(_Token(_EOF, "", self.line, len(text) - self.line_start + 1, space))
        return out


# --------------------------------------------------------------------------- parser

_CONSTANTS: dict[str, Any] = {
    "true": True,
    "false": False,
    "Inf": math.inf,
    "inf": math.inf,
    "NaN": math.nan,
    "nan": math.nan,
}
_ARITHMETIC = set("+-*/\\^:.&|~<>@!")


@dataclass(frozen=True)
class _Name:
    """A bare identifier, resolved against the file's local functions at the end."""

    name: str
    line: int
    column: int


class _Parser:
    def __init__(self, tokens: list[_Token], path: str):
        self.tokens = tokens
        self.pos = 0
        self.path = path
        self.functions: dict[str, Any] = {}

    # -- helpers
    @property
    def token(self) -> _Token:
        return self.tokens[self.pos]

    def next(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def error(self, token: _Token, expected: str) -> MatlabSyntaxError:
        where = f"{self.path}, line {token.line}, column {token.column}"
        return MatlabSyntaxError(f"{where}: expected {expected}; got {_describe(token)}")

    def expect(self, text: str, expected: str | None = None) -> _Token:
        token = self.token
        if token.text != text or token.kind not in (_OP, _NAME):
            raise self.error(token, expected or repr(text))
        return self.next()

    def skip_separators(self, newlines: bool = True) -> None:
        while True:
            token = self.token
            if not (
                (token.kind == _OP and token.text in (";", ","))
                or (newlines and token.kind == _NEWLINE)
            ):
                return
            self.pos += 1

    def is_op(self, text: str) -> bool:
        return self.token.kind == _OP and self.token.text == text

    def is_keyword(self, word: str) -> bool:
        return self.token.kind == _NAME and self.token.text == word

    def end_statement(self) -> None:
        token = self.token
        if token.kind in (_NEWLINE, _EOF) or (token.kind == _OP and token.text in (";", ",")):
            self.skip_separators()
            return
        if token.kind == _OP and token.text in _ARITHMETIC:
            raise self.error(token, "the end of the statement (arithmetic is not supported)")
        raise self.error(token, "';' or the end of the line after the statement")

    # -- file structure
    def parse_file(self) -> tuple[str | None, str, tuple[Any, ...]]:
        self.skip_separators()
        function_name = None
        output = None
        if self.is_keyword("function"):
            output, function_name = self.function_header()
        variable, entries = None, None
        while True:
            self.skip_separators()
            token = self.token
            if token.kind == _EOF:
                break
            if self.is_keyword("function"):
                self.local_function()
            elif self.is_keyword("end"):
                if function_name is None:
                    raise self.error(token, "a statement ('end' without a 'function' header)")
                self.next()
                self.skip_separators()
                while self.is_keyword("function"):
                    self.local_function()
                    self.skip_separators()
                if self.token.kind != _EOF:
                    raise self.error(
                        self.token,
                        f"a local function or the end of the file after the 'end' of "
                        f"function {function_name!r}",
                    )
                break
            elif token.kind == _NAME:
                if variable is not None:
                    raise self.error(
                        token, f"'end' or a local function after the assignment to {variable!r}"
                    )
                variable, entries = self.ring_assignment(output)
            else:
                raise self.error(token, "an assignment 'ring = {...};'")
        if variable is None:
            raise MatlabSyntaxError(
                f"{self.path}: expected an assignment of the lattice cell array, "
                "like 'ring = {atdrift('D1', 1.0); ...};'; found none"
            )
        resolved = []
        for entry, start in entries:
            value = self.resolve(entry)
            if not isinstance(value, Call):
                raise self.error(start, "an element constructor call such as atdrift('D1', 1.0)")
            resolved.append(value)
        return function_name, variable, tuple(resolved)

    def function_header(self) -> tuple[str, str]:
        self.expect("function")
        out = self.token
        if out.kind != _NAME:
            raise self.error(
                out, "the output variable of the function, as in 'function ring = name()'"
            )
        self.next()
        if not self.is_op("="):
            raise self.error(self.token, f"'=' after the output variable {out.text!r}")
        self.next()
        name = self.token
        if name.kind != _NAME:
            raise self.error(name, "the function name")
        self.next()
        if self.is_op("("):
            self.next()
            self.expect(")", "')': lattice functions take no arguments")
        self.end_statement()
        return out.text, name.text

    def local_function(self) -> None:
        """``function v = NAME() v = literal; [end]`` -- a helper such as ``True()``."""
        output, name = self.function_header()
        self.skip_separators()
        target = self.token
        if target.kind != _NAME or target.text != output:
            raise self.error(
                target, f"'{output} = <literal>;' as the body of the local function {name!r}"
            )
        self.next()
        self.expect("=", f"'=' after {output!r}")
        value = self.value()
        self.end_statement()
        if self.is_keyword("end"):
            self.next()
            self.end_statement()
        if isinstance(value, Call | _Name):
            raise self.error(
                target, f"a literal value as the result of the local function {name!r}"
            )
        self.functions[name] = value

    def ring_assignment(self, output: str | None) -> tuple[str, list[tuple[Any, _Token]]]:
        target = self.next()
        if output is not None and target.text != output:
            raise self.error(target, f"an assignment to the function output {output!r}")
        if not self.is_op("="):
            raise self.error(self.token, f"'=' after {target.text!r}")
        self.next()
        opening = self.token
        if not self.is_op("{"):
            raise self.error(opening, "'{' opening the cell array of elements")
        starts: list[_Token] = []
        rows = self.cell(starts)
        if self.is_op("'"):
            self.next()  # a transposed cell: orientation does not matter here
        self.end_statement()
        if len(rows) > 1 and any(len(row) > 1 for row in rows):
            sizes = ", ".join(str(len(row)) for row in rows)
            raise MatlabSyntaxError(
                f"{self.path}, line {opening.line}, column {opening.column}: expected the "
                f"elements in one row or one column of the cell array; got rows of {sizes} "
                "items (end every element with ';' or ',', not a mix)"
            )
        items = [item for row in rows for item in row]
        return target.text, list(zip(items, starts, strict=True))

    # -- values
    def value(self) -> Any:
        token = self.token
        if token.kind == _NUMBER:
            self.next()
            return self.postfix(_number(token.text))
        if token.kind == _STRING:
            self.next()
            return token.text
        if token.text in ("-", "+") and token.kind == _OP:
            self.next()
            operand = self.token
            value = self.value()
            if isinstance(value, bool) or not isinstance(value, int | float | np.ndarray):
                raise self.error(operand, f"a number after the sign {token.text!r}")
            return -value if token.text == "-" else value
        if token.text == "[":
            return self.postfix(self.matrix())
        if token.text == "{":
            rows = self.cell()
            return [item for row in rows for item in row]
        if token.kind == _NAME:
            self.next()
            if token.text in _CONSTANTS:
                return self.postfix(_CONSTANTS[token.text])
            if self.token.text == "(" and self.token.kind == _OP:
                args = self.arguments(token)
                if token.text == "struct":
                    return _struct(args, token, self.path)
                return Call(token.text, tuple(args), token.line, token.column)
            return _Name(token.text, token.line, token.column)
        raise self.error(token, "a value (number, string, [matrix], {cell} or call)")

    def postfix(self, value: Any) -> Any:
        """Apply transposes; refuse arithmetic after a value."""
        while self.token.text == "'" and self.token.kind == _OP:
            self.next()
            if isinstance(value, np.ndarray):
                value = value.T
        token = self.token
        if token.kind == _OP and token.text in ("*", "/", "\\", "^"):
            raise self.error(token, "a separator (arithmetic is not supported; write the number)")
        return value

    def arguments(self, name: _Token) -> list[Any]:
        self.expect("(")
        args: list[Any] = []
        if self.token.text == ")" and self.token.kind == _OP:
            self.next()
            return args
        while True:
            args.append(self.value())
            token = self.next()
            if token.kind == _OP and token.text == ")":
                return args
            if token.kind == _OP and token.text == ",":
                continue
            if token.kind == _OP and token.text in _ARITHMETIC:
                raise self.error(
                    token, f"',' or ')' in the call to {name.text!r} (arithmetic is not supported)"
                )
            raise self.error(
                token,
                f"',' or ')' in the call to {name.text!r} started at line {name.line} "
                "(use '...' to continue a call on the next line)",
            )

    def _elements(
        self, closer: str, what: str, starts: list[_Token] | None = None
    ) -> list[list[Any]]:
        """Rows of items inside ``[...]`` or ``{...}``; returns after the closing bracket.

        ``starts``, if given, receives the first token of each item (for messages).
        """
        opening = self.next()
        rows: list[list[Any]] = [[]]
        need_separator = False
        while True:
            token = self.token
            if token.kind == _OP and token.text == closer:
                self.next()
                return [row for row in rows if row] or [[]]
            if token.kind == _EOF:
                raise self.error(
                    token, f"{closer!r} closing the {what} opened at line {opening.line}"
                )
            if token.kind == _NEWLINE or (token.kind == _OP and token.text == ";"):
                self.next()
                if rows[-1]:
                    rows.append([])
                need_separator = False
                continue
            if token.kind == _OP and token.text == ",":
                self.next()
                need_separator = False
                continue
            if need_separator:
                # Inside brackets a space separates items, so "[1 -2]" is two numbers,
                # while "[1 - 2]" and "[1-2]" would be arithmetic.
                signed = token.text in "+-" and token.kind == _OP
                unary = signed and token.space_before and not self.tokens[self.pos + 1].space_before
                if not token.space_before or (signed and not unary):
                    raise self.error(
                        token, f"',' ';' or {closer!r} in the {what} (arithmetic is not supported)"
                    )
            if starts is not None:
                starts.append(token)
            rows[-1].append(self.value())
            need_separator = True

    def matrix(self) -> np.ndarray:
        opening = self.token
        rows = self._elements("]", "matrix")
        blocks = []
        for row in rows:
            parts = []
            for item in row:
                if isinstance(item, bool) or not isinstance(item, int | float | np.ndarray):
                    raise self.error(opening, f"numbers inside the matrix; got {item!r}")
                parts.append(np.atleast_2d(np.asarray(item, dtype=np.float64)))
            parts = [part for part in parts if part.size]
            if not parts:
                continue
            if len({part.shape[0] for part in parts}) > 1:
                raise self.error(opening, "rows of equal height in the matrix")
            blocks.append(np.hstack(parts))
        if not blocks:
            return np.zeros((0, 0))
        if len({block.shape[1] for block in blocks}) > 1:
            widths = ", ".join(str(block.shape[1]) for block in blocks)
            raise self.error(opening, f"rows of equal length in the matrix; got lengths {widths}")
        return np.vstack(blocks)

    def cell(self, starts: list[_Token] | None = None) -> list[list[Any]]:
        return self._elements("}", "cell array", starts)

    # -- resolution of local-function calls such as True()
    def resolve(self, value: Any) -> Any:
        if isinstance(value, _Name | Call) and value.name in self.functions:
            if isinstance(value, Call) and value.args:
                raise MatlabSyntaxError(
                    f"{self.path}, line {value.line}, column {value.column}: expected no "
                    f"arguments to the local function {value.name!r}; got {len(value.args)}"
                )
            return self.functions[value.name]
        if isinstance(value, _Name):
            raise MatlabSyntaxError(
                f"{self.path}, line {value.line}, column {value.column}: expected a value; "
                f"got the name {value.name!r}, which is not a literal, a call or a local "
                "function of this file (variables are not supported)"
            )
        if isinstance(value, Call):
            args = tuple(self.resolve(arg) for arg in value.args)
            return Call(value.name, args, value.line, value.column)
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if isinstance(value, dict):
            return {key: self.resolve(item) for key, item in value.items()}
        return value


def _number(text: str) -> int | float:
    """An integer literal stays an int (as Python reads it); anything else is a float."""
    return int(text) if text.isdigit() else float(text)


def _struct(args: list[Any], name: _Token, path: str) -> dict[str, Any]:
    where = f"{path}, line {name.line}, column {name.column}"
    if len(args) % 2:
        raise MatlabSyntaxError(f"{where}: expected struct('field', value, ...) in pairs")
    fields: dict[str, Any] = {}
    for key, value in zip(args[::2], args[1::2], strict=True):
        if not isinstance(key, str):
            raise MatlabSyntaxError(f"{where}: expected a field name string in struct; got {key!r}")
        if isinstance(value, list):
            # struct('f', {v}) stores v; a longer cell would make a struct array.
            if len(value) != 1:
                raise MatlabSyntaxError(
                    f"{where}: expected one value for struct field {key!r}; struct arrays "
                    "are not supported"
                )
            value = value[0]
        fields[key] = value
    return fields


def parse_lattice_file(text: str, path: str = "<string>") -> LatticeFile:
    """Parse the text of an AT MATLAB lattice file.

    Args:
        text: the file's content.
        path: the name used in error messages.

    Returns:
        The header's function name, the assigned variable and the cell array's items
        (mostly :class:`Call` objects for the element constructors).

    Raises:
        MatlabSyntaxError: (a ``ValueError``) naming the file, line and column and what was
            expected, for malformed text or syntax outside the supported subset.

    Example:
        >>> lattice = parse_lattice_file("ring = {atdrift('D', 1.5)};")
        >>> lattice.entries[0].name, lattice.entries[0].args
        ('atdrift', ('D', 1.5))
    """
    tokens = _Tokeniser(text, path).tokens()
    parser = _Parser(tokens, path)
    function_name, variable, entries = parser.parse_file()
    return LatticeFile(path, function_name, variable, entries)
