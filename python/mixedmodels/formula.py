"""Parsing lme4 model formulas, as R and lme4 read them.

``response ~ fixed + (expr | group) + (expr || group) + ...``

The text is parsed once into an R syntax tree (`_rexpr`), and the
right-hand sides are read with R's term algebra (``terms.formula``):

- ``a + b`` adds terms, ``a - b`` removes them, ``1``/``0``/``- 1`` put the
  intercept in or out; ``a:b`` is the interaction, ``a * b`` is
  ``a + b + a:b``, ``a / b`` is ``a + a:b``, ``(a + b + c)^2`` is every
  interaction up to order 2; duplicates are dropped and terms ordered by
  their order, as R orders them;
- anything else (``x``, ``log(x)``, ``I(x^2)``, ``poly(x, 2)``) is a
  *variable*, named by R's deparse (``I(x^2)``), evaluated by `_reval`;
- ``offset(x)`` terms are offsets, not columns;
- ``(expr | g)`` is a random-effects term with its own terms; ``(expr || g)``
  is one uncorrelated term per term of ``expr`` (lme4's
  ``expandDoubleVerts``); grouping ``a:b`` is an interaction; nesting ``a/b``
  is ``(expr | a) + (expr | b:a)`` (lme4 names the nested factor ``b:a``).

Unsupported syntax (``.``, ``%in%``, a bar outside parentheses) is refused
with a `FormulaError` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

from ._rexpr import BinOp, Call, Const, Name, Node, Paren, Unary, deparse, parse_expression
from .exceptions import FormulaError

__all__ = ["ParsedFormula", "RandomTerm", "TermList", "names_in", "parse_formula", "parse_rhs"]

Term = tuple[str, ...]
"""A model term: the labels of its variables, in the formula's variable order."""


@dataclass(frozen=True)
class TermList:
    """A right-hand side read as R's ``terms()``: the intercept, the terms and their variables."""

    text: str
    """The right-hand side, as R prints it."""
    intercept: bool
    """Whether the intercept is in."""
    terms: tuple[Term, ...]
    """The terms other than the intercept, by order (main effects first), then as written."""
    variables: tuple[tuple[str, Node], ...]
    """Each variable's label and expression, in order of first appearance."""
    offsets: tuple[Node, ...] = ()
    """The expressions of ``offset(...)`` terms."""

    @property
    def labels(self) -> list[str]:
        """Return R's term labels (``'a:b'``)."""
        return [":".join(t) for t in self.terms]

    def node(self, label: str) -> Node:
        """Return the expression of the variable with this label."""
        return dict(self.variables)[label]

    @property
    def columns(self) -> set[str]:
        """Return the data columns that the terms and offsets refer to."""
        out: set[str] = set()
        for _, node in self.variables:
            out |= names_in(node)
        for node in self.offsets:
            out |= names_in(node)
        return out


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term ``(expr | f1:f2:...)``."""

    terms: TermList
    """The term's model-matrix right-hand side."""
    factors: tuple[str, ...]
    """Grouping variables whose interaction is the grouping factor."""

    @property
    def expr(self) -> str:
        """Return the right-hand side of the term's model matrix, as R prints it."""
        return self.terms.text

    @property
    def group(self) -> str:
        """Return lme4's name of the grouping factor, e.g. ``'tch:sch'``."""
        return ":".join(self.factors)


@dataclass(frozen=True)
class ParsedFormula:
    """An lme4 formula, parsed once: response, fixed terms and random-effects terms."""

    text: str
    """The formula as written."""
    response_node: Node
    """The left-hand side's expression."""
    fixed_terms: TermList
    """The fixed part of the right-hand side."""
    random: tuple[RandomTerm, ...]
    """The random-effects terms, in formula order (``||`` and ``/`` expanded)."""

    @property
    def response(self) -> str:
        """Return the left-hand side, as R prints it."""
        return deparse(self.response_node)

    @property
    def fixed(self) -> str:
        """Return the fixed part as text (``"1"`` when the formula has none)."""
        return self.fixed_terms.text

    @property
    def response_name(self) -> str | None:
        """Return the response's variable name, or None when it is an expression."""
        return self.response_node.id if isinstance(self.response_node, Name) else None

    @cached_property
    def variable_names(self) -> frozenset[str]:
        """Return every name the formula reads from the data (``pi`` included when used)."""
        names = names_in(self.response_node) | self.fixed_terms.columns
        for t in self.random:
            names |= t.terms.columns | set(t.factors)
        return frozenset(names)


def names_in(node: Node) -> set[str]:
    """Return the variable names an expression refers to (not function names)."""
    if isinstance(node, Name):
        return {node.id}
    if isinstance(node, Call):
        args = node.args[:1] if node.fn == "C" else node.args  # C(f, sum): sum is not a column
        return set().union(*(names_in(v) for _, v in args)) if args else set()
    if isinstance(node, BinOp):
        return names_in(node.left) | names_in(node.right)
    if isinstance(node, Unary):
        return names_in(node.operand)
    if isinstance(node, Paren):
        return names_in(node.inner)
    return set()


def _error(text: str, pos: int, msg: str) -> FormulaError:
    return FormulaError(f"{msg}\n  {text}\n  {' ' * pos}^")


def _signed(node: Node) -> list[tuple[str, Node]]:
    """Flatten a chain of ``+`` and ``-`` into signed pieces, as R reads it left to right.

    A sign in front of a piece composes with the operator before it (``a + -b`` removes b).
    """
    if isinstance(node, BinOp) and node.op in ("+", "-"):
        return [*_signed(node.left), *_sign(node.op, node.right)]
    return _sign("+", node)


def _sign(sign: str, node: Node) -> list[tuple[str, Node]]:
    while isinstance(node, Unary) and node.op in ("+", "-"):
        sign = "+" if (sign == "+") == (node.op == "+") else "-"
        node = node.operand
    return [(sign, node)]


class _Algebra:
    """R's term algebra over one right-hand side (``terms.formula``'s encoding)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.vars: dict[str, Node] = {}
        self.offsets: list[Node] = []

    def sum(self, node: Node, start: list[frozenset[str]], top: bool) -> list[frozenset[str]]:
        terms = list(start)
        for sign, piece in _signed(node):
            if isinstance(piece, Const) and not isinstance(piece.value, bool | str):
                if piece.value not in (0, 1):
                    raise _error(self.text, piece.pos, f"invalid model term {deparse(piece)!r}")
                if (piece.value == 1) == (sign == "+"):
                    terms += [] if frozenset() in terms else [frozenset()]
                else:
                    terms = [t for t in terms if t]
                continue
            if isinstance(piece, Call) and piece.fn == "offset":
                if not top or sign == "-" or len(piece.args) != 1 or piece.args[0][0] is not None:
                    raise _error(
                        self.text, piece.pos, "offset(x) must be a term of its own: + offset(x)"
                    )
                self.offsets.append(piece.args[0][1])
                continue
            new = self.expand(piece)
            if sign == "+":
                terms += [t for t in new if t not in terms]
            else:
                terms = [t for t in terms if t not in new]
        return terms

    def expand(self, node: Node) -> list[frozenset[str]]:
        if isinstance(node, Paren):
            return self.sum(node.inner, [], top=False)
        if isinstance(node, BinOp):
            op = node.op
            if op in ("+", "-"):
                return self.sum(node, [], top=False)
            if op in (":", "*", "/"):
                left = self.expand(node.left)
                right = self.expand(node.right)
                if op == "/":
                    whole = frozenset().union(*left)
                    return _unique([*left, *(whole | b for b in right)])
                cross = [a | b for b in right for a in left]
                return _unique(cross if op == ":" else [*left, *right, *cross])
            if op == "^":
                power = node.right
                if not (isinstance(power, Const) and isinstance(power.value, float)):
                    raise _error(
                        self.text, node.pos, "the power of terms must be a number: (a + b)^2"
                    )
                if power.value < 1 or power.value != int(power.value):
                    raise _error(
                        self.text, node.pos, "the power of terms must be a whole number ≥ 1"
                    )
                base = self.expand(node.left)
                out = base
                for _ in range(int(power.value) - 1):
                    out = _unique([*out, *base, *(a | b for b in base for a in out)])
                return out
            if op == "%in%":
                raise _error(
                    self.text, node.pos, "'%in%' is not supported: write a:b (or a/b for nesting)"
                )
            if op in ("|", "||"):
                raise _error(
                    self.text,
                    node.pos,
                    "random-effects terms must be in parentheses: (expr | group)",
                )
            raise _error(
                self.text,
                node.pos,
                f"{op!r} is not a formula operator; to compute it, wrap it in I(): I(a {op} b)",
            )
        if isinstance(node, Unary):
            raise _error(self.text, node.pos, f"unexpected {node.op!r} inside a term")
        if isinstance(node, Name) and node.id == ".":
            raise _error(
                self.text, node.pos, "'.' (all other columns) is not supported; name the columns"
            )
        if isinstance(node, Const):
            if isinstance(node.value, float) and node.value in (0, 1):
                return [frozenset()] if node.value == 1 else []
            raise _error(self.text, node.pos, f"invalid model term {deparse(node)!r}")
        if isinstance(node, Call) and node.fn == "offset":
            raise _error(self.text, node.pos, "offset(x) must be a term of its own: + offset(x)")
        label = deparse(node)
        self.vars.setdefault(label, node)
        return [frozenset([label])]

    def term_list(self, node: Node | None, text: str) -> TermList:
        terms = self.sum(node, [frozenset()], top=True) if node is not None else [frozenset()]
        order = {lab: i for i, lab in enumerate(self.vars)}
        body = sorted((t for t in terms if t), key=len)  # stable: by order, then as written
        return TermList(
            text=text,
            intercept=frozenset() in terms,
            terms=tuple(tuple(sorted(t, key=order.__getitem__)) for t in body),
            variables=tuple(self.vars.items()),
            offsets=tuple(self.offsets),
        )


def _unique(terms: list[frozenset[str]]) -> list[frozenset[str]]:
    return list(dict.fromkeys(terms))


def parse_rhs(text: str) -> TermList:
    """Read a right-hand side such as ``"0 + x + log(z)"`` into its terms.

    Parameters
    ----------
    text
        A sum of terms, without ``~``.

    Returns
    -------
    TermList
        The intercept flag, the terms by order, their variables.

    Examples
    --------
    >>> t = parse_rhs("(a + b + c)^2 - a:b")
    >>> t.intercept, t.labels
    (True, ['a', 'b', 'c', 'a:c', 'b:c'])
    >>> parse_rhs("b:a + a*log(x) - 1").labels
    ['a', 'log(x)', 'b:a', 'a:log(x)']
    """
    node = parse_expression(text)
    return _Algebra(text).term_list(node, _rhs_text(_signed(node)))


def _rhs_text(pieces: list[tuple[str, Node]]) -> str:
    """Return the pieces as R prints their sum (``"1"`` when there are none)."""
    out = " ".join(("- " if s == "-" else "+ ") + deparse(p) for s, p in pieces).strip()
    if out.startswith("+ "):
        out = out[2:]
    if not out:
        return "1"
    return "-" + out[2:] if out.startswith("- ") else out


def _unparen(node: Node) -> Node:
    while isinstance(node, Paren):
        node = node.inner
    return node


def _groups(node: Node, text: str) -> list[tuple[str, ...]]:
    """Return the grouping factors of a bar's right side: ``a/b`` is ``a`` and ``b:a``."""
    node = _unparen(node)
    if isinstance(node, BinOp) and node.op == "/":
        outer = _groups(node.left, text)
        inner = _interaction(node.right, text)
        return [*outer, inner + outer[-1]]
    return [_interaction(node, text)]


def _interaction(node: Node, text: str) -> tuple[str, ...]:
    node = _unparen(node)
    if isinstance(node, BinOp) and node.op == ":":
        return _interaction(node.left, text) + _interaction(node.right, text)
    if isinstance(node, Name):
        return (node.id,)
    raise _error(
        text,
        node.pos,
        f"grouping factor {deparse(node)!r} is not a variable name (use a:b or a/b; "
        "make a new column for anything else)",
    )


def _random(bar: BinOp, text: str) -> list[RandomTerm]:
    groups = _groups(bar.right, text)
    lhs = bar.left
    if _has_bar(lhs):
        raise _error(text, bar.pos, "a random-effects term has one '|': (expr | group)")
    algebra = _Algebra(text)
    terms = algebra.term_list(lhs, _rhs_text(_signed(lhs)))
    if not terms.intercept and not terms.terms:
        raise _error(text, bar.pos, f"the random-effects term ({deparse(bar)}) has no columns")
    if terms.offsets:
        raise _error(text, bar.pos, "offset() cannot be inside a random-effects term")
    exprs = [terms]
    if bar.op == "||":  # lme4's expandDoubleVerts: one term per term label
        one = (TermList("1", True, (), ()),) if terms.intercept else ()
        exprs = [
            *one,
            *(
                TermList(f"0 + {':'.join(t)}", False, (t,), tuple((v, terms.node(v)) for v in t))
                for t in terms.terms
            ),
        ]
    return [RandomTerm(e, g) for g in groups for e in exprs]


@lru_cache(maxsize=512)
def parse_formula(text: str) -> ParsedFormula:
    """Parse an lme4 formula.

    Parameters
    ----------
    text
        The formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.

    Returns
    -------
    ParsedFormula
        The response, the fixed terms and the random-effects terms.

    Raises
    ------
    FormulaError
        When the formula cannot be parsed; the message points at the spot.

    Examples
    --------
    >>> f = parse_formula("Reaction ~ Days + (Days | Subject)")
    >>> f.response, f.fixed, [(t.expr, t.group) for t in f.random]
    ('Reaction', 'Days', [('Days', 'Subject')])
    >>> [t.group for t in parse_formula("y ~ 1 + (1 | sch/tch)").random]
    ['sch', 'tch:sch']
    """
    if not isinstance(text, str):
        raise FormulaError(f"the formula must be a string, not {type(text).__name__}")
    if "~" not in text:
        raise FormulaError(f"the formula has no '~': write 'response ~ terms'\n  {text}")
    node = parse_expression(text)
    if not isinstance(node, BinOp) or node.op != "~":
        pos = node.pos if not isinstance(node, BinOp) else 0
        raise _error(text, pos, "the formula has no response on the left of '~'")
    if isinstance(node.right, BinOp) and node.right.op == "~" or _has_tilde(node.left):
        raise _error(
            text, text.index("~", text.index("~") + 1), "the formula has more than one '~'"
        )
    fixed: list[tuple[str, Node]] = []
    random: list[RandomTerm] = []
    for sign, piece in _signed(node.right):
        bar = _unparen(piece)
        if isinstance(bar, BinOp) and bar.op in ("|", "||") and isinstance(piece, Paren):
            if sign == "-":
                raise _error(text, piece.pos, "a random-effects term cannot be subtracted")
            random.extend(_random(bar, text))
        else:
            _no_bar(piece, text)
            fixed.append((sign, piece))
    if not random:
        raise FormulaError(
            "the formula has no random-effects terms such as (1 | group); "
            f"for a model without random effects use a linear model\n  {text}"
        )
    algebra = _Algebra(text)
    fixed_node = _join(fixed)
    return ParsedFormula(
        text=text,
        response_node=node.left,
        fixed_terms=algebra.term_list(fixed_node, _rhs_text(fixed)),
        random=tuple(random),
    )


def _has_bar(node: Node) -> bool:
    """Whether a ``|`` or ``||`` appears in an expression outside ``I()``."""
    if isinstance(node, BinOp):
        return node.op in ("|", "||") or _has_bar(node.left) or _has_bar(node.right)
    if isinstance(node, Unary):
        return _has_bar(node.operand)
    if isinstance(node, Paren):
        return _has_bar(node.inner)
    if isinstance(node, Call) and node.fn != "I":
        return any(_has_bar(v) for _, v in node.args)
    return False


def _no_bar(node: Node, text: str) -> None:
    """Refuse a ``|`` in the fixed part: random-effects terms are parenthesized bars."""
    if _has_bar(node):
        raise _error(text, node.pos, "random-effects terms must be in parentheses: (expr | group)")


def _has_tilde(node: Node) -> bool:
    return isinstance(node, BinOp) and (node.op == "~" or _has_tilde(node.left))


def _join(pieces: list[tuple[str, Node]]) -> Node | None:
    """Rebuild a ``+``/``-`` chain from signed pieces (None when there are none)."""
    out: Node | None = None
    for sign, p in pieces:
        out = (
            Unary(sign, p, p.pos)
            if out is None and sign == "-"
            else (p if out is None else BinOp(sign, out, p, p.pos))
        )
    return out
