"""Parsing kubectl's JSONPath templates into literal text, actions and ranges.

The grammar is client-go's ``util/jsonpath`` (what `kubectl -o jsonpath=` reads): text
with expressions in braces; in an expression ``.field`` (``\\.`` escapes a dot),
``..`` (recursive descent), ``*``, ``[n]``, ``[a:b:c]``, ``[*]``, ``['a.b']`` (the
path ``.a.b``), unions ``[x,y]``, filters ``[?(@.a == "x")]`` / ``[?(@.a)]``, quoted
text with Go escapes (``{"\\n"}``), numbers, ``true``/``false``, and ``range`` ...
``end``. ``clrk.cli.jsonpath_template`` evaluates what this returns."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


class TemplateError(ValueError):
    """A template that does not parse, or that fails on the data (as kubectl's would)."""


# --- nodes: each maps the list of current values to a new list -------------------------


@dataclass(frozen=True)
class Field:
    name: str


@dataclass(frozen=True)
class Wildcard:
    pass


@dataclass(frozen=True)
class Recursive:
    pass


@dataclass(frozen=True)
class Slice:
    start: int | None
    stop: int | None
    step: int | None
    single: bool  # [n]: the stop was derived (n + 1)


@dataclass(frozen=True)
class Literal:
    value: Any  # text, number or bool: the same value for every input


@dataclass(frozen=True)
class Union:
    branches: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Filter:
    left: tuple[Any, ...]
    op: str  # "exists" or a comparison
    right: tuple[Any, ...]


@dataclass(frozen=True)
class Identifier:
    name: str  # range / end (only as the first word of an action)


@dataclass
class Action:
    nodes: tuple[Any, ...]


@dataclass
class Range:
    nodes: tuple[Any, ...]
    body: list[Any] = field(default_factory=list)


Item = str | Action | Range

# --- parsing ---------------------------------------------------------------------------

_TERMINATORS = frozenset(" \t\r\n.,[]$@{}")
_SLICE = re.compile(r"^(-?\d*)(:-?\d*)?(:-?\d*)?$")
_DICT_KEY = re.compile(r"^'([^']*)'$")
_COMPARISON = re.compile(r"^([^!<>=]+)([!<>=]+)(.+?)$")
_OPERATORS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)")
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                   "v": "\v", "\\": "\\", "'": "'", '"': '"'}


def _unescape(text: str, quote: str) -> str:
    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        if code in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[code]
        if code[0] in "xuU":
            return chr(int(code[1:], 16))
        if code.isdigit():
            return chr(int(code, 8))
        raise TemplateError(f"invalid escape \\{code} in {quote}{text}{quote}")

    return _ESCAPE.sub(one, text)


class _Parser:
    """Reads the expressions of one action: ``text`` starts just after its ``{``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos:self.pos + n]

    def action(self, closing: bool = True) -> tuple[Any, ...]:
        """Nodes up to the closing ``}`` (consumed), or to the end when not ``closing``."""
        nodes: list[Any] = []
        while True:
            if self.pos >= len(self.text):
                if closing:
                    raise TemplateError("unclosed action")
                return tuple(nodes)
            if self.peek() == "}" and closing:
                self.pos += 1
                return tuple(nodes)
            if self.peek(3) == "[?(":
                nodes.append(self._filter())
                continue
            if self.peek(2) == "..":
                if nodes and isinstance(nodes[-1], Recursive):
                    raise TemplateError("invalid multiple recursive descent")
                self.pos += 2
                nodes.append(Recursive())
                if self.pos < len(self.text) and _word_char(self.text[self.pos]):
                    nodes.append(self._field())
                continue
            c = self.text[self.pos]
            if c in "\r\n":
                raise TemplateError("unclosed action")
            if c in " \t@$":
                self.pos += 1
            elif c == "[":
                nodes.append(self._brackets())
            elif c in "\"'":
                nodes.append(Literal(self._quoted(c)))
            elif c == ".":
                self.pos += 1
                nodes.append(self._field())
            elif c in "+-" or c.isdigit():
                nodes.append(Literal(self._number()))
            elif _word_char(c):
                word = self._word()
                nodes.append(Literal(word == "true") if word in ("true", "false")
                             else Identifier(word))
            else:
                raise TemplateError(f"unrecognized character in action: {c!r}")

    def _word(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _TERMINATORS:
            self.pos += 1
        return self.text[start:self.pos]

    def _field(self) -> Field | Wildcard:
        chars: list[str] = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c == "\\" and self.pos + 1 < len(self.text):
                chars.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if c in _TERMINATORS:
                break
            chars.append(c)
            self.pos += 1
        name = "".join(chars)
        return Wildcard() if name == "*" else Field(name)

    def _number(self) -> int | float:
        start = self.pos
        if self.peek() in "+-":
            self.pos += 1
        while self.pos < len(self.text) and (self.text[self.pos].isdigit()
                                             or self.text[self.pos] == "."):
            self.pos += 1
        text = self.text[start:self.pos]
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            raise TemplateError(f"cannot parse number {text}") from None

    def _quoted(self, quote: str) -> str:
        start = self.pos
        self.pos += 1
        while True:
            if self.pos >= len(self.text) or self.text[self.pos] == "\n":
                raise TemplateError("unterminated quoted string")
            if self.text[self.pos] == quote and self.text[self.pos - 1] != "\\":
                self.pos += 1
                return _unescape(self.text[start + 1:self.pos - 1], quote)
            self.pos += 1

    def _brackets(self) -> Any:
        end = self.pos
        while end < len(self.text) and self.text[end] not in "]\n":
            end += 1
        if end >= len(self.text) or self.text[end] != "]":
            raise TemplateError("unterminated array")
        inner = self.text[self.pos + 1:end]
        self.pos = end + 1
        if inner == "*":
            inner = ":"
        parts = inner.split(",")
        if len(parts) > 1:
            return Union(tuple(_Parser(f"[{p.strip()}]").action(closing=False)
                               for p in parts))
        if m := _DICT_KEY.match(inner):
            nodes = _Parser("." + m.group(1)).action(closing=False)
            return nodes[0] if len(nodes) == 1 else Union((nodes,))
        m = _SLICE.match(inner)
        if m is None:
            raise TemplateError(f"invalid array index {inner}")
        start, stop, step = m.groups()
        if stop is None:
            n = int(start) if start else 0
            return Slice(n, None, None, single=True)
        return Slice(int(start) if start else None,
                     int(stop[1:]) if len(stop) > 1 else None,
                     int(step[1:]) if step and len(step) > 1 else None, single=False)

    def _filter(self) -> Filter:
        self.pos += 3
        start = self.pos
        quote = ""
        closed = False
        while True:
            if self.pos >= len(self.text) or self.text[self.pos] == "\n":
                raise TemplateError("unterminated filter")
            c = self.text[self.pos]
            self.pos += 1
            if c in "\"'":
                if not quote:
                    quote = c
                elif c == quote and self.text[self.pos - 2] != "\\":
                    closed = True
            elif c == ")" and bool(quote) == closed:
                break
        if self.peek() != "]":
            raise TemplateError("unclosed array expect ]")
        self.pos += 1
        inner = self.text[start:self.pos - 2]
        m = _COMPARISON.match(inner)
        if m is None:
            return Filter(_Parser(inner).action(closing=False), "exists", ())
        left, op, right = m.groups()
        if op not in _OPERATORS:
            raise TemplateError(f"unrecognized filter operator {op}")
        return Filter(_Parser(left).action(closing=False), op,
                      _Parser(right).action(closing=False))


def _word_char(c: str) -> bool:
    return c == "_" or c.isalnum()


def parse(template: str) -> list[Item]:
    """The template as literal text, actions and ranges (with their bodies)."""
    stack: list[list[Item]] = [[]]
    pos = 0
    while pos < len(template):
        brace = template.find("{", pos)
        if brace < 0:
            stack[-1].append(template[pos:])
            break
        if brace > pos:
            stack[-1].append(template[pos:brace])
        parser = _Parser(template[brace + 1:])
        nodes = parser.action()
        pos = brace + 1 + parser.pos
        head = nodes[0] if nodes else None
        if isinstance(head, Identifier) and head.name == "range":
            rng = Range(nodes[1:])
            stack[-1].append(rng)
            stack.append(rng.body)
        elif isinstance(head, Identifier) and head.name == "end":
            if len(stack) == 1:
                raise TemplateError("not in range, nothing to end")
            stack.pop()
        else:
            bad = next((n for n in nodes if isinstance(n, Identifier)), None)
            if bad is not None:
                raise TemplateError(f"unrecognized identifier {bad.name}")
            stack[-1].append(Action(nodes))
    return stack[0]
