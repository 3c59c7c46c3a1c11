"""JSON the transports see raw: a whole object, or its last top-level members without the rest of it.

An embeddings response is megabytes of floats followed by the two members a span needs (`model`,
`usage`). Decoding the whole body to read them would cost the app tens of milliseconds a call, on top of
its own decoding; decoding from the first of them on costs microseconds.
"""

from __future__ import annotations

import json
import re
from typing import Any

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_OBJECT_START = re.compile(rb"[ \t\n\r]*\{")
_decode = json.JSONDecoder().raw_decode


def decode_object(raw: bytes | str) -> dict[str, Any] | None:
    """The JSON object in `raw`, or None when it is not one: malformed, another kind of value, or nested
    deeper than Python decodes (which raises RecursionError, not ValueError). Never raises."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def trailing_members(body: bytes, keys: tuple[str, ...], fragment: bool = False) -> dict[str, Any] | None:
    """The members of the object `body` from the first of `keys` to its end, or None when that part is
    not the object's top level as far as can be seen (the caller then decodes the whole body).

    With `fragment`, `body` is only the end of an object whose opening brace the caller has seen: a key
    that stood at the top level before the fragment is then missed, never misread.

    Each key is looked for from the end, so the part decoded holds the last occurrence of every key.
    That part is the top level when it parses as members followed by the object's closing brace and
    nothing else (a member nested deeper would be followed by more than one closing bracket), and it
    has the same members as the whole object when every key found is one of them.
    """
    positions = {key: body.rfind(b'"%s"' % key.encode()) for key in keys}
    found = [key for key, position in positions.items() if position >= 0]
    start = min((positions[key] for key in found), default=-1)
    if start <= 0 or not (fragment or _OBJECT_START.match(body)):
        return None
    before = start - 1
    while before > 0 and body[before] in b" \t\n\r":
        before -= 1
    if body[before] not in b"{,":  # not where a member starts: inside a string, or a value
        return None
    try:
        text = body[start:].decode()
        members, end = _members(text)
    except (ValueError, RecursionError):  # not JSON there (or nested beyond reason), or not UTF-8
        return None
    if end != len(text) or any(key not in members for key in found):
        return None  # nested deeper, or a key stands at the top level before the part decoded
    return members


def _members(text: str) -> tuple[dict[str, Any], int]:
    """Parse `"key": value, ... }` and the whitespace after it; return the members and where it stopped."""
    members: dict[str, Any] = {}
    index = 0
    while True:
        key, index = _decode(text, index)
        if key.__class__ is not str:
            raise ValueError("a member's key is not a string")
        index = _WHITESPACE.match(text, index).end()
        if text[index : index + 1] != ":":
            raise ValueError("no colon after a member's key")
        index = _WHITESPACE.match(text, index + 1).end()
        members[key], index = _decode(text, index)
        index = _WHITESPACE.match(text, index).end()
        separator = text[index : index + 1]
        index = _WHITESPACE.match(text, index + 1).end()
        if separator == "}":
            return members, index
        if separator != ",":
            raise ValueError("a member is followed by neither a comma nor the closing brace")
