"""JSON from clients with a bounded nesting depth, checked before ``json.loads`` sees the text.

Python's ``json`` recurses once per level of nesting: 100,000 ``[`` make it raise RecursionError
(a 500 if nothing catches it), and any depth below that costs stack and time for no purpose.  No
document OPUS accepts nests deeper than a few levels, so every JSON body from the network goes
through :func:`loads`, which measures the depth first without recursion, in time linear in the
size of the text, and answers 400 beyond :data:`MAX_JSON_DEPTH`.
"""

from __future__ import annotations

import json
import operator
import re
from itertools import accumulate, count
from typing import Any

from opus.errors import BadRequest
#: The deepest nesting of arrays and objects accepted (a job report or an admin request uses 3).
MAX_JSON_DEPTH = 32

# A JSON string: the closing quote is optional so that an unterminated string consumes the rest
# of the text in one match instead of being retried from every later quote (which would be
# quadratic); unrolled so that the regular expression engine never backtracks.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
# Opening brackets become 2 and closing ones 0: the running sum minus the count of brackets seen
# is then the depth after each bracket, all computed by C-level iterators.
_WEIGHTS = bytes.maketrans(b"[]{}", b"\x02\x00\x02\x00")


class JSONTooDeep(BadRequest):
    """A JSON document nested deeper than the limit (400)."""


def json_depth(data: bytes | str) -> int:
    """The deepest nesting of arrays and objects in ``data`` (0 for a scalar).

    Exact for valid JSON.  For invalid JSON it is never below the depth ``json.loads`` reaches
    before it finds the error, since both read strings the same way up to that point.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw)).translate(_WEIGHTS)
    return max(map(operator.sub, accumulate(brackets), count(1)), default=0)


def check_depth(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`JSONTooDeep` when ``data`` nests deeper than ``max_depth``."""
    if json_depth(data) > max_depth:
        raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels")


def loads(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` after the depth check: 400 (:class:`JSONTooDeep`) for a document nested
    deeper than ``max_depth``; invalid JSON still raises ``ValueError`` for the caller to word."""
    check_depth(data, max_depth)
    return json.loads(data)
