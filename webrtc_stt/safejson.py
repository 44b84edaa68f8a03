"""JSON from clients, parsed within bounds: every failure is one :class:`UnsafeJson`.

Python's parser recurses once per nesting level and converts integers of any length, so a
hostile text can raise ``RecursionError`` (a 60,000-deep array fits in 60 KB) or trip the
int-string limit (over 4300 digits, a ``ValueError`` with Python's own wording) and spend
quadratic time below it. Here nesting past ``max_depth`` and integers past
``max_int_digits`` are refused before or while parsing, ``NaN``/``Infinity`` are not JSON,
and messages name the problem in words of the protocol, never Python's.
"""

from __future__ import annotations

import json

MAX_DEPTH = 32
"""No request or message of ours nests deeper than a handful of levels."""
MAX_INT_DIGITS = 32


class UnsafeJson(ValueError):
    """The text is not JSON we accept; the message says why, for the client."""


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH,
          max_int_digits: int = MAX_INT_DIGITS) -> object:
    """Parse ``text`` or raise :class:`UnsafeJson`."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsafeJson("not UTF-8") from None
    if depth(text) > max_depth:
        raise UnsafeJson(f"JSON nested deeper than {max_depth} levels")

    def bounded_int(digits: str) -> int:
        if len(digits.lstrip("-")) > max_int_digits:
            raise UnsafeJson(f"JSON integer longer than {max_int_digits} digits")
        return int(digits)

    def no_constant(name: str) -> float:
        raise UnsafeJson(f"{name} is not JSON")

    try:
        return json.loads(text, parse_int=bounded_int, parse_constant=no_constant)
    except UnsafeJson:
        raise
    except json.JSONDecodeError as exc:
        raise UnsafeJson(f"not valid JSON: {exc.msg} at character {exc.pos}") from None
    except (ValueError, RecursionError):
        raise UnsafeJson("not valid JSON") from None


def depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in JSON text, brackets inside strings ignored."""
    level = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            level += 1
            deepest = max(deepest, level)
        elif char in "]}":
            level -= 1
    return deepest
