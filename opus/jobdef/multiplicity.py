"""Multiplicities of parameters and inputs: "1", "N" (at most N), "M..N", "M..*" or "*"."""

from __future__ import annotations

import re

_MULTIPLICITY = re.compile(r"^(?:\*|([0-9]{1,6})|([0-9]{1,6})\.\.([0-9]{1,6}|\*))\Z")


def multiplicity_range(text: str) -> tuple[int, int | None]:
    """(minimum, maximum or None) of a multiplicity: "1", "N", "M..N", "M..*" or "*"."""
    m = _MULTIPLICITY.match(text or "1")
    if not m:
        raise ValueError(f"multiplicity {text!r}: use 1, N, M..N, M..* or *")
    if text == "*":
        return 0, None
    if m.group(1) is not None:
        return 0, int(m.group(1))
    low, high = int(m.group(2)), m.group(3)
    if high == "*":
        return low, None
    if int(high) < low or int(high) == 0:
        raise ValueError(f"multiplicity {text!r}: the maximum is below the minimum")
    return low, int(high)


def describe_multiplicity(text: str) -> str:
    low, high = multiplicity_range(text)
    if high is None:
        return f"at least {low} value(s)" if low else "any number of values"
    return f"between {low} and {high} values" if low else f"at most {high} value(s)"
