"""R's number formatting, enough to print lme4's summary layout.

`format_r` follows R's ``formatReal``: every element of a vector is shown
with the same number of decimals, the fewest that show each element to
``digits`` significant digits (trailing zeros dropped).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["format_r", "abbreviate", "named_vector", "table"]


def _needed_decimals(x: float, digits: int) -> int:
    if x == 0 or not math.isfinite(x):
        return 0
    s = f"{abs(x):.{digits - 1}e}"  # digits significant digits
    mant, exp = s.split("e")
    e = int(exp)
    mant = mant.replace(".", "").rstrip("0") or "0"
    nsig = len(mant)
    return max(0, nsig - 1 - e)


def format_r(values: Sequence[float], digits: int = 4) -> list[str]:
    """Format numbers as R's ``format(x, digits=)``.

    Common decimals, common width (right-justified).
    """
    vals = [float(v) for v in values]
    finite = [v for v in vals if math.isfinite(v)]
    dec = max((_needed_decimals(v, digits) for v in finite), default=0)
    dec = min(dec, 15)
    out = []
    for v in vals:
        if math.isnan(v):
            out.append("NA")
        elif math.isinf(v):
            out.append("Inf" if v > 0 else "-Inf")
        else:
            out.append(f"{v:.{dec}f}")
    w = max((len(s) for s in out), default=0)
    return [s.rjust(w) for s in out]


def abbreviate(name: str, minlength: int = 6) -> str:
    """Abbreviate as R's ``abbreviate(name, minlength)``.

    Drop lower-case vowels from the right (not the first character), then
    lower-case letters, then truncate.
    """
    chars = list(name)
    if len(chars) <= minlength:
        return name
    for pred in (lambda c: c in "aeiou", lambda c: c.islower()):
        i = len(chars) - 1
        while len(chars) > minlength and i > 0:
            if pred(chars[i]) and chars[i - 1] != " ":
                del chars[i]
            i -= 1
    return "".join(chars[:minlength]) if len(chars) > minlength else "".join(chars)


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    rownames: Sequence[str] | None = None,
    right: bool = True,
) -> str:
    """Lay out a character table as R prints a character matrix."""
    ncol = len(header)
    widths = [max([len(header[j])] + [len(r[j]) for r in rows]) for j in range(ncol)]
    rn = list(rownames) if rownames is not None else [""] * len(rows)
    rw = max([len(s) for s in rn], default=0)

    def cell(s: str, w: int) -> str:
        return s.rjust(w) if right else s.ljust(w)

    lines = [" ".join([" " * rw] + [cell(h, widths[j]) for j, h in enumerate(header)])]
    for name, r in zip(rn, rows, strict=True):
        lines.append(" ".join([name.ljust(rw)] + [cell(r[j], widths[j]) for j in range(ncol)]))
    return "\n".join(lines)


def named_vector(
    names: Sequence[str], values: Sequence[float] | Sequence[str], digits: int = 4
) -> str:
    """Print a named numeric vector as R does.

    Names right-aligned over the values, each field followed by a space.
    Strings are taken as formatted.
    """
    if all(isinstance(v, str) for v in values):
        vals = [str(v).strip() for v in values]
    else:
        vals = format_r([float(v) for v in values], digits)
    w = max([len(n) for n in names] + [len(v) for v in vals])
    top = "".join(n.rjust(w) + " " for n in names)
    bottom = "".join(v.rjust(w) + " " for v in vals)
    return top + "\n" + bottom
