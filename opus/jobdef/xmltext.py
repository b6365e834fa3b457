"""Reading XML job definitions: element and text helpers, and typed values with errors that name
the place in the document.  Shared by ``votable.py`` and ``wadl.py``."""

from __future__ import annotations

import math
import re

from lxml import etree

from opus.errors import ConfigurationError
from opus.jobdef.multiplicity import multiplicity_range

_INTEGER = re.compile(r"^\s*[+-]?[0-9]+\s*\Z")


def local_name(el: etree._Element) -> str:
    return etree.QName(el).localname


def elements(el: etree._Element) -> list[etree._Element]:
    """The child elements (comments and processing instructions left out)."""
    return [child for child in el if isinstance(child.tag, str)]


def text_of(el: etree._Element | None) -> str:
    """The text content of an element (mixed content flattened, comments left out)."""
    return "" if el is None else str(el.xpath("string()"))


def parse_bool(text: str, where: str) -> bool:
    value = (text or "").strip().lower()
    if value in ("true", "t", "1", "yes"):
        return True
    if value in ("false", "f", "0", "no"):
        return False
    raise ConfigurationError(f"{where}: {text!r} is not a boolean (true or false)")


def parse_int(text: str, where: str) -> int:
    if not _INTEGER.match(text or ""):
        raise ConfigurationError(f"{where}: {text!r} is not an integer")
    try:
        return int(text)
    except ValueError:  # more digits than Python converts
        raise ConfigurationError(f"{where}: {text[:40]!r}... is too long") from None


def parse_number(text: str, where: str) -> int | float:
    """An int when written as one, else a float (so an int or float bound reads back as it was)."""
    if _INTEGER.match(text or ""):
        return parse_int(text, where)
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigurationError(f"{where}: {text!r} is not a finite number")
    return value


def number_text(value: object, where: str, integral: bool = False) -> str:
    """A bound as text: exact (repr) for a float, an integer when ``integral`` and it is whole."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{where}: {value!r} is not a number")
    if isinstance(value, float) and integral and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, int) else repr(value)


def multiple(multiplicity: str, where: str) -> tuple[int, int | None]:
    """multiplicity_range, with ConfigurationError naming the parameter."""
    try:
        return multiplicity_range(multiplicity)
    except ValueError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
