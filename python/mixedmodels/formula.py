"""Parsing lme4 model formulas.

``response ~ fixed + (expr | group) + (expr || group) + ...``

The formula text is tokenized here and nowhere else: `parse_formula` returns
one `ParsedFormula` with the response, the fixed part as a list of terms
(`Terms`) and the random-effects terms, and every later stage (the design,
prediction's ``re_form``) reads that object. Terms that are not plain
variable names (``log(x)``, ``a*b``, ``I(x**2)``) are handed to formulaic by
the design. Random-effects terms are the parenthesized bars at the top level
of the right-hand side:

- ``(expr | g)``: correlated random effects for the columns of ``expr``
  (``1``, ``x``, ``0 + x``, ``1 + x + z``; an intercept is implied unless
  removed with ``0 +`` or ``- 1``) by the levels of ``g``;
- ``(expr || g)``: one uncorrelated term per column term, as lme4's
  ``expandDoubleVerts`` does: ``(1 + x || g)`` is ``(1 | g) + (0 + x | g)``;
- grouping ``a:b`` is the interaction of ``a`` and ``b``; nesting ``a/b`` is
  ``(expr | a) + (expr | b:a)`` (lme4 names the nested factor ``b:a``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .exceptions import FormulaError

__all__ = ["ParsedFormula", "RandomTerm", "Terms", "parse_formula", "parse_terms", "variable_name"]

_NAME = re.compile(r"`[^`]+`|[A-Za-z_.][A-Za-z0-9_.]*")
"""A variable name: R's syntactic names, or anything between backticks."""


def variable_name(text: str) -> str | None:
    """Return the variable that a term names (backticks removed), or None.

    Parameters
    ----------
    text
        One term of a formula.

    Returns
    -------
    str or None
        The name, or None when the term is an expression such as ``log(x)``.

    Examples
    --------
    >>> variable_name("`my x`"), variable_name("Days"), variable_name("log(Days)")
    ('my x', 'Days', None)
    """
    t = text.strip()
    return t.strip("`") if _NAME.fullmatch(t) else None


@dataclass(frozen=True)
class Terms:
    """A right-hand side read as R reads a sum of terms.

    ``1`` adds the intercept, ``0`` or ``- 1`` removes it; every other piece
    is a term, added (``+``) or removed (``-``).
    """

    text: str
    """The right-hand side as written (formulaic syntax)."""
    intercept: bool
    """Whether the intercept is in."""
    added: tuple[str, ...]
    """The terms added, in order (not ``0`` or ``1``)."""
    removed: tuple[str, ...] = ()
    """The terms subtracted, other than the intercept."""

    @property
    def names(self) -> tuple[str, ...] | None:
        """Variables of the added terms when each is a plain name and none is removed, else None."""
        if self.removed:
            return None
        names = tuple(variable_name(t) for t in self.added)
        return None if None in names else tuple(n for n in names if n is not None)

    @property
    def variables(self) -> set[str] | None:
        """Variables of all terms when each is a plain name, else None."""
        names = [variable_name(t) for t in (*self.added, *self.removed)]
        return None if None in names else {n for n in names if n is not None}


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term ``(expr | f1:f2:...)``."""

    terms: Terms
    """The term's model-matrix right-hand side."""
    factors: tuple[str, ...]
    """Grouping variables whose interaction is the grouping factor."""

    @property
    def expr(self) -> str:
        """Right-hand side of the term's model matrix (formulaic syntax)."""
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
    response: str
    """The left-hand side: a variable name or an expression."""
    fixed_terms: Terms
    """The fixed part of the right-hand side."""
    random: tuple[RandomTerm, ...]
    """The random-effects terms, in formula order (``||`` and ``/`` expanded)."""

    @property
    def fixed(self) -> str:
        """Return the fixed part as text (``"1"`` when the formula has none)."""
        return self.fixed_terms.text

    @property
    def response_name(self) -> str | None:
        """Return the response's variable name, or None when it is an expression."""
        return variable_name(self.response)


def _error(text: str, pos: int, msg: str) -> FormulaError:
    return FormulaError(f"{msg}\n  {text}\n  {' ' * pos}^")


def _top_level_split(s: str, seps: str, offset: int, text: str) -> list[tuple[int, str, str]]:
    """Split ``s`` at characters of ``seps`` outside parentheses and backticks.

    Returns (position in text, separator before, piece) triples.
    """
    out: list[tuple[int, str, str]] = []
    depth = 0
    in_tick = False
    start = 0
    sep = "+"
    for i, ch in enumerate(s):
        if ch == "`":
            in_tick = not in_tick
        elif in_tick:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise _error(text, offset + i, "unbalanced ')' in formula")
        elif depth == 0 and ch in seps:
            # '-' inside exponents like 1e-3 is not an operator
            if ch == "-" and i > 0 and re.match(r".*\d[eE]$", s[:i]):
                continue
            out.append((offset + start, sep, s[start:i]))
            sep = ch
            start = i + 1
    if in_tick:
        raise _error(text, offset + len(s), "unclosed backtick in formula")
    if depth != 0:
        raise _error(text, offset + len(s), "unbalanced '(' in formula: missing ')'")
    out.append((offset + start, sep, s[start:]))
    return out


def _terms(rhs: str, pieces: list[tuple[int, str, str]]) -> Terms:
    """Read signed pieces as R's sum of terms (empty pieces are skipped)."""
    intercept = True
    added: list[str] = []
    removed: list[str] = []
    for _, sep, piece in pieces:
        p = piece.strip()
        if not p:
            continue
        if p == "0" or (p == "1" and sep == "-"):
            intercept = False
        elif p == "1":
            intercept = True
        else:
            (removed if sep == "-" else added).append(p)
    return Terms(rhs.strip(), intercept, tuple(added), tuple(removed))


def parse_terms(rhs: str) -> Terms:
    """Parse a right-hand side such as ``"0 + x"`` into its terms.

    Parameters
    ----------
    rhs
        A sum of terms, without ``~``.

    Returns
    -------
    Terms
        The intercept flag and the added and removed terms.

    Examples
    --------
    >>> t = parse_terms("0 + Days + `my x`")
    >>> t.intercept, t.added, t.names
    (False, ('Days', '`my x`'), ('Days', 'my x'))
    """
    return _terms(rhs, _top_level_split(rhs, "+-", 0, rhs))


def _parse_group(g: str, pos: int, text: str) -> list[tuple[str, ...]]:
    g = g.strip()
    if not g:
        raise _error(text, pos, "missing grouping factor after '|'")
    parts = [p.strip() for p in g.split("/")]
    groups: list[tuple[str, ...]] = []
    prefix: tuple[str, ...] = ()
    for part in parts:
        names: list[str] = []
        for n in part.split(":"):
            name = variable_name(n)
            if name is None:
                raise _error(
                    text,
                    pos,
                    f"grouping factor {n.strip()!r} is not a variable name (use a:b or a/b)",
                )
            names.append(name)
        # lme4 names the nested factor innermost first: a/b -> b:a
        groups.append(tuple(names) + prefix)
        prefix = tuple(names) + prefix
    return groups


def _random_terms(lhs: str, pos: int, text: str, double: bool) -> list[Terms]:
    """Return the model-matrix terms of ``(lhs | g)``, or of ``(lhs || g)`` expanded."""
    pieces = _top_level_split(lhs, "+-", pos, text)
    terms = _terms(lhs, pieces)
    if not double:
        return [terms]
    if terms.removed:
        raise _error(text, pos, "'-' inside a random-effects term only removes the intercept")
    out = [Terms("1", True, ())] if terms.intercept else []
    out.extend(Terms(f"0 + {t}", False, (t,)) for t in terms.added)
    return out


def _bar(inner: str) -> int:
    """Position of the first '|' at depth 0 of ``inner``, or -1."""
    depth = 0
    for i, ch in enumerate(inner):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return i
    return -1


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
    tilde = [i for i, ch in enumerate(text) if ch == "~"]
    if not tilde:
        raise FormulaError(f"the formula has no '~': write 'response ~ terms'\n  {text}")
    if len(tilde) > 1:
        raise _error(text, tilde[1], "the formula has more than one '~'")
    t = tilde[0]
    response = text[:t].strip()
    if not response:
        raise _error(text, 0, "the formula has no response on the left of '~'")
    rhs = text[t + 1 :]
    fixed: list[tuple[int, str, str]] = []
    random: list[RandomTerm] = []
    for pos, sep, piece in _top_level_split(rhs, "+-", t + 1, text):
        p = piece.strip()
        if not p:
            if sep == "-" or fixed or random:
                raise _error(text, pos, "empty term in formula")
            continue
        lead = pos + (len(piece) - len(piece.lstrip()))
        bar = _bar(p[1:-1]) if p.startswith("(") and p.endswith(")") else -1
        if bar >= 0:
            if sep == "-":
                raise _error(text, lead, "a random-effects term cannot be subtracted")
            inner = p[1:-1]
            double = inner[bar + 1 : bar + 2] == "|"
            lhs = inner[:bar].strip()
            if not lhs:
                raise _error(text, lead + 1, "missing model terms before '|'")
            gpos = lead + 1 + bar + (2 if double else 1)
            groups = _parse_group(inner[gpos - lead - 1 :], gpos, text)
            exprs = _random_terms(lhs, lead + 1, text, double)
            random.extend(RandomTerm(e, g) for g in groups for e in exprs)
            continue
        if "|" in p and not p.startswith("I("):
            raise _error(text, lead, "random-effects terms must be in parentheses: (expr | group)")
        fixed.append((lead, sep, p))
    if not random:
        raise FormulaError(
            "the formula has no random-effects terms such as (1 | group); "
            f"for a model without random effects use a linear model\n  {text}"
        )
    return ParsedFormula(
        text=text, response=response, fixed_terms=_fixed_terms(fixed), random=tuple(random)
    )


def _fixed_terms(pieces: list[tuple[int, str, str]]) -> Terms:
    """Return the fixed part, its text as lme4 would print it (``"1"`` when empty)."""
    fixed_text = " ".join(("- " if sep == "-" else "+ ") + p for _, sep, p in pieces).strip()
    if fixed_text.startswith("+ "):
        fixed_text = fixed_text[2:]
    if not fixed_text:
        fixed_text = "1"
    elif fixed_text.startswith("- "):
        fixed_text = "1 " + fixed_text
    return _terms(fixed_text, pieces)
