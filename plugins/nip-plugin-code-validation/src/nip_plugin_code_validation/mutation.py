"""Mutants of a solution: single AST-located rewrites that may introduce a bug.

:func:`mutants` lists every single-site mutation of the code after a given line:

- a flipped comparison (``<`` to ``<=``, ``==`` to ``!=``, ``in`` to ``not in`` ...);
- a swapped arithmetic operator (``+`` and ``-``, ``*`` to ``+``, ``//`` to ``/``,
  ``%`` to ``//``), also in augmented assignments (``+=`` to ``-=``);
- ``and`` and ``or`` swapped, a ``not`` dropped, ``True`` and ``False`` swapped;
- an off-by-one integer constant (``n`` to ``n + 1`` and ``n - 1``), an off-by-one
  bound of ``range(...)`` and of slices.

Each mutation is a text edit at the source position the AST gives, so the rest of
the code keeps its exact formatting (a mutant must not be told apart by its
layout). Whether a mutant is a bug is decided by running the tests in the sandbox
(:mod:`nip_plugin_code_validation.humaneval`).
"""

from __future__ import annotations

import ast
import hashlib
import random
import re
from collections.abc import Iterator

import attrs

__all__ = ["Mutant", "mutants", "shuffled_mutants"]

_COMPARE_SWAPS: dict[type, tuple[str, str]] = {
    ast.Lt: ("<", "<="),
    ast.LtE: ("<=", "<"),
    ast.Gt: (">", ">="),
    ast.GtE: (">=", ">"),
    ast.Eq: ("==", "!="),
    ast.NotEq: ("!=", "=="),
}
_BINOP_SWAPS: dict[type, tuple[str, str]] = {
    ast.Add: ("+", "-"),
    ast.Sub: ("-", "+"),
    ast.Mult: ("*", "+"),
    ast.FloorDiv: ("//", "/"),
    ast.Mod: ("%", "//"),
}


@attrs.frozen
class Mutant:
    """One mutation of a source text.

    Parameters
    ----------
    source : str
        The mutated source.
    description : str
        What was changed, e.g. ``"line 5: '<' -> '<='"``.
    """

    source: str
    description: str


class _Edits:
    """Collects text edits located by AST positions (UTF-8 byte columns)."""

    def __init__(self, source: str, first_line: int):
        self.source = source
        self.data = source.encode("utf-8")
        self.first_line = first_line
        self.line_starts = [0]
        for line in self.data.splitlines(keepends=True):
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.found: list[tuple[int, int, bytes, str]] = []

    def offset(self, line: int, col: int) -> int:
        return self.line_starts[line - 1] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (
            self.offset(node.lineno, node.col_offset),  # type: ignore[attr-defined]
            self.offset(node.end_lineno, node.end_col_offset),  # type: ignore[attr-defined]
        )

    def text(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.data[start:end].decode("utf-8")

    def wanted(self, node: ast.AST) -> bool:
        return getattr(node, "lineno", 0) >= self.first_line

    def add(self, start: int, end: int, replacement: str, what: str, line: int):
        self.found.append(
            (start, end, replacement.encode("utf-8"), f"line {line}: {what}")
        )

    def token_between(
        self, left: ast.AST, right: ast.AST, token: str, replacement: str, line: int
    ) -> None:
        """Replace ``token`` in the gap between two nodes (the operator)."""
        gap_start = self.span(left)[1]
        gap_end = self.span(right)[0]
        gap = self.data[gap_start:gap_end].decode("utf-8")
        pattern = (
            rf"(?<![\w]){re.escape(token)}(?![\w])"
            if token[0].isalpha()
            else rf"(?<![<>=!*/%+\-]){re.escape(token)}(?![<>=*/%])"
        )
        match = re.search(pattern, gap)
        if match is None:
            return
        start = gap_start + len(gap[: match.start()].encode("utf-8"))
        end = start + len(token.encode("utf-8"))
        self.add(start, end, replacement, f"{token!r} -> {replacement!r}", line)

    def plus_minus_one(self, node: ast.AST, what: str) -> None:
        start, end = self.span(node)
        text = self.data[start:end].decode("utf-8")
        simple = isinstance(node, ast.Name | ast.Constant | ast.Attribute | ast.Call)
        simple = simple or isinstance(node, ast.Subscript)
        base = text if simple else f"({text})"
        for delta in ("+ 1", "- 1"):
            self.add(start, end, f"{base} {delta}", f"{what} {delta}", node.lineno)  # type: ignore[attr-defined]


def _collect(edits: _Edits, tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if not edits.wanted(node):
            continue
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for i, op in enumerate(node.ops):
                pair = _COMPARE_SWAPS.get(type(op))
                left, right = operands[i], operands[i + 1]
                if pair is not None:
                    edits.token_between(left, right, *pair, node.lineno)
                elif isinstance(op, ast.In):
                    edits.token_between(left, right, "in", "not in", node.lineno)
                elif isinstance(op, ast.NotIn):
                    start = edits.span(left)[1]
                    end = edits.span(right)[0]
                    gap = edits.data[start:end].decode("utf-8")
                    match = re.search(r"not\s+in", gap)
                    if match:
                        s = start + len(gap[: match.start()].encode())
                        e = start + len(gap[: match.end()].encode())
                        edits.add(s, e, "in", "'not in' -> 'in'", node.lineno)
        elif isinstance(node, ast.BinOp):
            pair = _BINOP_SWAPS.get(type(node.op))
            if pair is not None:
                edits.token_between(node.left, node.right, *pair, node.lineno)
        elif isinstance(node, ast.AugAssign):
            pair = _BINOP_SWAPS.get(type(node.op))
            if pair is not None and pair[1] in ("+", "-"):
                edits.token_between(
                    node.target, node.value, pair[0] + "=", pair[1] + "=", node.lineno
                )
        elif isinstance(node, ast.BoolOp):
            token, other = (
                ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            )
            for left, right in zip(node.values, node.values[1:], strict=False):
                edits.token_between(left, right, token, other, node.lineno)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            start = edits.span(node)[0]
            operand = edits.text(node.operand)
            if isinstance(node.operand, ast.BoolOp | ast.Compare):
                operand = f"({operand})" if not operand.startswith("(") else operand
            edits.add(start, edits.span(node)[1], operand, "dropped 'not'", node.lineno)
        elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
            start, end = edits.span(node)
            flipped = "False" if node.value else "True"
            edits.add(start, end, flipped, f"{node.value} -> {flipped}", node.lineno)
        elif (
            isinstance(node, ast.Constant)
            and type(node.value) is int
            and edits.text(node).isdigit()
        ):
            start, end = edits.span(node)
            for value in (node.value + 1, node.value - 1):
                if value < 0:
                    continue
                edits.add(
                    start, end, str(value), f"{node.value} -> {value}", node.lineno
                )
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "range"
            and node.args
            and not isinstance(node.args[-1], ast.Constant)
        ):
            bound = node.args[0] if len(node.args) == 1 else node.args[1]
            edits.plus_minus_one(bound, "range bound")
        elif isinstance(node, ast.Slice):
            for bound in (node.lower, node.upper):
                if bound is not None and not isinstance(bound, ast.Constant):
                    edits.plus_minus_one(bound, "slice bound")


def mutants(source: str, first_line: int = 1) -> list[Mutant]:
    """Every single-site mutation of ``source`` at or after ``first_line``, in
    source order; each parses and differs from ``source``."""
    tree = ast.parse(source)
    edits = _Edits(source, first_line)
    _collect(edits, tree)
    out: list[Mutant] = []
    seen: set[str] = set()
    for start, end, replacement, what in sorted(edits.found, key=lambda e: e[:2]):
        data = edits.data[:start] + replacement + edits.data[end:]
        text = data.decode("utf-8")
        if text == source or text in seen:
            continue
        try:
            ast.parse(text)
        except SyntaxError:
            continue
        seen.add(text)
        out.append(Mutant(text, what))
    return out


def shuffled_mutants(
    source: str, key: str, seed: int, first_line: int = 1
) -> Iterator[Mutant]:
    """:func:`mutants` in a order drawn from ``seed`` and ``key`` (a problem id)."""
    found = mutants(source, first_line)
    digest = hashlib.sha256(f"{seed}/{key}".encode()).digest()
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(found)
    yield from found
