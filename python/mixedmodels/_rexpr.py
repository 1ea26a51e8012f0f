"""R expressions: tokens, syntax tree, parser and R's deparse.

The formula language is R's expression syntax, so formulas are parsed as R
parses them: the same operators with the same precedence (``?Syntax``):

====================  ==========================  =============
operators             meaning                     associativity
====================  ==========================  =============
``~``                 formula                     right
``|`` ``||``          random-effects bar, or      left
``&`` ``&&``          and                         left
``!``                 not (prefix)
``==`` ``<`` ...      comparison                  left
``+`` ``-``           sum, difference             left
``*`` ``/``           product, quotient           left
``%any%``             special operators           left
``:``                 interaction, sequence       left
``+`` ``-``           sign (prefix)
``^`` (or ``**``)     power                       right
====================  ==========================  =============

`deparse` prints a tree the way R's ``deparse`` does, which is how R names
terms and model-matrix columns: ``I(x^2)``, ``log(x + 1)``, ``exp(x/10)``,
``poly(x, 2, raw = TRUE)``, numbers in R's shortest form (``1e+05``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .exceptions import FormulaError

__all__ = [
    "BinOp",
    "Call",
    "Const",
    "Name",
    "Node",
    "Paren",
    "Unary",
    "deparse",
    "parse_expression",
    "r_number",
]


@dataclass(frozen=True)
class Name:
    """A variable name (backticks removed)."""

    id: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Const:
    """A number, a string or a logical constant."""

    value: float | str | bool
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Call:
    """A function call; ``args`` are (name or None, value) pairs in order."""

    fn: str
    args: tuple[tuple[str | None, Node], ...]
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class BinOp:
    """A binary operator."""

    op: str
    left: Node
    right: Node
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Unary:
    """A prefix operator: ``-``, ``+`` or ``!``."""

    op: str
    operand: Node
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Paren:
    """Parentheses, kept as R keeps them (they show in names)."""

    inner: Node
    pos: int = field(default=0, compare=False)


Node = Name | Const | Call | BinOp | Unary | Paren

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?L?)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<tick>`[^`]*`)
  | (?P<name>(?:[^\W\d_]|\.(?!\d))[\w.]*|\.)
  | (?P<op>%[^%\s]*%|\*\*|\|\||&&|==|!=|<=|>=|[-+*/^:~|&!<>(),=\[\]$@])
    """,
    re.VERBOSE,
)

_INFIX: dict[str, tuple[int, int]] = {
    "~": (2, 1),
    "|": (3, 4),
    "||": (3, 4),
    "&": (5, 6),
    "&&": (5, 6),
    "==": (9, 10),
    "!=": (9, 10),
    "<": (9, 10),
    ">": (9, 10),
    "<=": (9, 10),
    ">=": (9, 10),
    "+": (11, 12),
    "-": (11, 12),
    "*": (13, 14),
    "/": (13, 14),
    "%": (15, 16),  # any %op%
    ":": (17, 18),
    "^": (22, 21),
}
_PREFIX = {"~": 1, "!": 7, "-": 19, "+": 19}
_NO_SPACE = {"/", "^", ":", "%%", "%/%"}
"""Binary operators that R's deparse writes without spaces."""
_RESERVED = {"TRUE", "FALSE", "NULL", "NA", "Inf", "NaN", "if", "else", "for", "while", "function"}
_CONSTANTS: dict[str, float | bool] = {"TRUE": True, "FALSE": False, "T": True, "F": False}


def _error(text: str, pos: int, msg: str) -> FormulaError:
    return FormulaError(f"{msg}\n  {text}\n  {' ' * pos}^")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None and text[pos] == "`":
                raise _error(text, pos, "unclosed backtick in formula")
            if m is None:
                raise _error(text, pos, f"unexpected character {text[pos]!r} in formula")
            kind = m.lastgroup or ""
            if kind != "space":
                self.tokens.append((kind, m.group(), pos))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", len(self.text))

    def take(self) -> tuple[str, str, int]:
        tok = self.peek()
        self.i += 1
        return tok

    def expect(self, op: str, what: str) -> None:
        kind, tok, pos = self.peek()
        if kind != "op" or tok != op:
            raise _error(self.text, pos, what)
        self.i += 1

    def expr(self, min_bp: int = 0) -> Node:
        lhs = self.prefix()
        while True:
            kind, tok, pos = self.peek()
            if kind != "op":
                if kind == "end":
                    break
                raise _error(
                    self.text, pos, f"unexpected {tok!r}: an operator is missing before it"
                )
            op = "^" if tok == "**" else tok
            key = "%" if op.startswith("%") else op
            if key not in _INFIX:
                break
            lbp, rbp = _INFIX[key]
            if lbp < min_bp:
                break
            self.i += 1
            lhs = BinOp(op, lhs, self.operand(rbp, tok, pos), pos)
        return lhs

    def operand(self, bp: int, op: str, pos: int) -> Node:
        kind, _, _ = self.peek()
        if kind == "end" or (kind == "op" and self.peek()[1] in (")", ",")):
            if op in ("|", "||"):
                raise _error(self.text, pos, f"missing grouping factor after {op!r}")
            raise _error(self.text, pos, f"missing term after {op!r}")
        return self.expr(bp)

    def prefix(self) -> Node:
        kind, tok, pos = self.take()
        if kind == "num":
            text = tok[:-1] if tok.endswith("L") else tok
            return Const(float(text), pos)
        if kind == "str":
            return Const(bytes(tok[1:-1], "utf-8").decode("unicode_escape"), pos)
        if kind == "tick":
            return self.after_name(tok[1:-1], pos, quoted=True)
        if kind == "name":
            return self.after_name(tok, pos, quoted=False)
        if kind == "op" and tok == "(":
            nxt = self.peek()
            if nxt[0] == "op" and nxt[1] in (")", "|", "||"):
                what = (
                    "empty parentheses '()'" if nxt[1] == ")" else "missing model terms before '|'"
                )
                raise _error(self.text, nxt[2], what)
            inner = self.expr(0)
            self.expect(")", "unbalanced '(' in formula: missing ')' to close it")
            return Paren(inner, pos)
        if kind == "op" and tok in _PREFIX:
            return Unary(tok, self.operand(_PREFIX[tok], tok, pos), pos)
        if kind == "end":
            raise _error(self.text, pos, "the formula ends where a term is expected")
        raise _error(self.text, pos, f"unexpected {tok!r} where a term is expected")

    def after_name(self, name: str, pos: int, quoted: bool) -> Node:
        kind, tok, _ = self.peek()
        if kind == "op" and tok == "(":
            self.i += 1
            return Call(name, self.arguments(pos), pos)
        if kind == "op" and tok in ("$", "@", "["):
            raise _error(self.text, self.peek()[2], f"{tok!r} is not supported in formulas")
        if not quoted and name in _CONSTANTS:
            return Const(_CONSTANTS[name], pos)
        return Name(name, pos)

    def arguments(self, pos: int) -> tuple[tuple[str | None, Node], ...]:
        args: list[tuple[str | None, Node]] = []
        if self.peek()[:2] == ("op", ")"):
            self.i += 1
            return ()
        while True:
            name = None
            kind, tok, _ = self.peek()
            nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else ("end", "", 0)
            if kind in ("name", "tick") and nxt[:2] == ("op", "="):
                name = tok.strip("`")
                self.i += 2
            args.append((name, self.expr(0)))
            kind, tok, p = self.take()
            if kind == "op" and tok == ")":
                return tuple(args)
            if not (kind == "op" and tok == ","):
                raise _error(
                    self.text, p if kind != "end" else pos, "missing ')' to close the call"
                )


def parse_expression(text: str) -> Node:
    """Parse R expression text (a formula is one) into a syntax tree.

    Parameters
    ----------
    text
        The expression, e.g. ``"y ~ log(x + 1) + (1 | g)"``.

    Returns
    -------
    Node
        The tree; ``**`` is read as ``^``, as R reads it.

    Raises
    ------
    FormulaError
        When the text is not an R expression; the message points at the spot.

    Examples
    --------
    >>> deparse(parse_expression("I(x**2)+log( x+1 )"))
    'I(x^2) + log(x + 1)'
    """
    p = _Parser(text)
    if not p.tokens:
        raise FormulaError("the formula is empty")
    node = p.expr(0)
    kind, tok, pos = p.peek()
    if kind != "end":
        msg = "unbalanced ')' in formula" if tok == ")" else f"unexpected {tok!r} in formula"
        raise _error(text, pos, msg)
    return node


def _syntactic(name: str) -> bool:
    return (
        re.fullmatch(r"(?:[^\W\d_]|\.(?!\d))[\w.]*|\.", name) is not None and name not in _RESERVED
    )


def r_number(value: float) -> str:
    """Format a number as R's ``deparse`` does (15 significant digits, the shorter form).

    Examples
    --------
    >>> [r_number(v) for v in (2.0, 0.5, 1e5, 123456.0, 1e-4, 0.001, -3.0, 0.1234567890123456)]
    ['2', '0.5', '1e+05', '123456', '1e-04', '0.001', '-3', '0.123456789012346']
    """
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    target = float(f"{value:.14e}")
    for digits in range(1, 16):
        mant = f"{value:.{digits - 1}e}"
        if float(mant) == target:
            break
    m, e = mant.split("e")
    exp = int(e)
    sci = f"{m}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    decimals = max(0, digits - 1 - exp)
    fixed = f"{value:.{decimals}f}"
    return fixed if len(fixed) <= len(sci) else sci


def deparse(node: Node) -> str:
    """Print a tree as R's ``deparse`` prints the parsed expression.

    Examples
    --------
    >>> deparse(parse_expression("poly(x,2,raw=TRUE):`my x`"))
    'poly(x, 2, raw = TRUE):`my x`'
    """
    if isinstance(node, Name):
        return node.id if _syntactic(node.id) else f"`{node.id}`"
    if isinstance(node, Const):
        v = node.value
        if isinstance(v, bool):
            return "TRUE" if v else "FALSE"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return r_number(v)
    if isinstance(node, Call):
        fn = node.fn if _syntactic(node.fn) else f"`{node.fn}`"
        args = ", ".join(deparse(v) if k is None else f"{k} = {deparse(v)}" for k, v in node.args)
        return f"{fn}({args})"
    if isinstance(node, BinOp):
        sep = node.op if node.op in _NO_SPACE else f" {node.op} "
        return f"{deparse(node.left)}{sep}{deparse(node.right)}"
    if isinstance(node, Unary):
        return f"{node.op}{deparse(node.operand)}"
    return f"({deparse(node.inner)})"
