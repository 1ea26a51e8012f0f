"""Parsing lme4 model formulas.

``response ~ fixed + (expr | group) + (expr || group) + ...``

The fixed part is handed to formulaic. Random-effects terms are the
parenthesized bars at the top level of the right-hand side:

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

__all__ = ["RandomTerm", "ParsedFormula", "parse_formula"]


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term ``(expr | f1:f2:...)``."""

    expr: str
    """Right-hand side of the term's model matrix (formulaic syntax)."""
    factors: tuple[str, ...]
    """Grouping variables whose interaction is the grouping factor."""

    @property
    def group(self) -> str:
        """lme4's name of the grouping factor, e.g. ``'tch:sch'``."""
        return ":".join(self.factors)


@dataclass(frozen=True)
class ParsedFormula:
    text: str
    response: str
    fixed: str
    random: tuple[RandomTerm, ...]


def _error(text: str, pos: int, msg: str) -> FormulaError:
    return FormulaError(f"{msg}\n  {text}\n  {' ' * pos}^")


def _top_level_split(s: str, seps: str, offset: int, text: str) -> list[tuple[int, str, str]]:
    """Split ``s`` at characters of ``seps`` outside parentheses and backticks.

    Returns (position in text, separator before, piece) triples."""
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


_NAME = r"(?:`[^`]+`|[A-Za-z_.][A-Za-z0-9_.]*)"


def _parse_group(g: str, pos: int, text: str) -> list[tuple[str, ...]]:
    g = g.strip()
    if not g:
        raise _error(text, pos, "missing grouping factor after '|'")
    parts = [p.strip() for p in g.split("/")]
    groups: list[tuple[str, ...]] = []
    prefix: tuple[str, ...] = ()
    for part in parts:
        names = tuple(n.strip() for n in part.split(":"))
        for n in names:
            if not re.fullmatch(_NAME, n):
                raise _error(
                    text, pos, f"grouping factor {n!r} is not a variable name (use a:b or a/b)"
                )
        names = tuple(n.strip("`") for n in names)
        # lme4 names the nested factor innermost first: a/b -> b:a
        groups.append(names + prefix)
        prefix = names + prefix
    return groups


def _split_double_bar(expr: str, pos: int, text: str) -> list[str]:
    pieces = _top_level_split(expr, "+-", pos, text)
    intercept = True
    terms: list[str] = []
    for _, sep, piece in pieces:
        p = piece.strip()
        if not p:
            continue
        if p == "0" or (p == "1" and sep == "-"):
            intercept = False
        elif p == "1":
            intercept = True
        elif sep == "-":
            raise _error(text, pos, "'-' inside a random-effects term only removes the intercept")
        else:
            terms.append(p)
    out = ["1"] if intercept else []
    out.extend(f"0 + {t}" for t in terms)
    return out


def parse_formula(text: str) -> ParsedFormula:
    """Parse an lme4 formula.

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
    pieces = _top_level_split(rhs, "+-", t + 1, text)
    fixed: list[str] = []
    random: list[RandomTerm] = []
    for pos, sep, piece in pieces:
        p = piece.strip()
        if not p:
            if sep == "-" or fixed or random:
                raise _error(text, pos, "empty term in formula")
            continue
        lead = pos + (len(piece) - len(piece.lstrip()))
        if p.startswith("(") and p.endswith(")"):
            inner = p[1:-1]
            # a bar at depth 0 of the inner text
            depth, bar = 0, -1
            for i, ch in enumerate(inner):
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                elif ch == "|" and depth == 0:
                    bar = i
                    break
            if bar >= 0:
                if sep == "-":
                    raise _error(text, lead, "a random-effects term cannot be subtracted")
                double = inner[bar + 1 : bar + 2] == "|"
                lhs = inner[:bar].strip()
                grp = inner[bar + (2 if double else 1) :]
                if not lhs:
                    raise _error(text, lead + 1, "missing model terms before '|'")
                gpos = lead + 1 + bar + (2 if double else 1)
                groups = _parse_group(grp, gpos, text)
                exprs = _split_double_bar(lhs, lead + 1, text) if double else [lhs]
                for g in groups:
                    for e in exprs:
                        random.append(RandomTerm(expr=e, factors=g))
                continue
        if "|" in p and not p.startswith("I("):
            raise _error(text, lead, "random-effects terms must be in parentheses: (expr | group)")
        fixed.append(("- " if sep == "-" else "+ ") + p)
    if not random:
        raise FormulaError(
            "the formula has no random-effects terms such as (1 | group); "
            f"for a model without random effects use a linear model\n  {text}"
        )
    fixed_text = " ".join(fixed).strip()
    if fixed_text.startswith("+ "):
        fixed_text = fixed_text[2:]
    if not fixed_text:
        fixed_text = "1"
    elif fixed_text.startswith("- "):
        fixed_text = "1 " + fixed_text
    return ParsedFormula(text=text, response=response, fixed=fixed_text, random=tuple(random))
