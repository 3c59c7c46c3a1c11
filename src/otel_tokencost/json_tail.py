"""JSON the transports see raw: a whole object, or some of its top-level members without the rest of it.

An embeddings response is megabytes of floats followed by the two members a span needs (`model`,
`usage`). Decoding the whole body to read them would cost the app tens of milliseconds a call, on top of
its own decoding; decoding from the first of them on costs microseconds. A request body with an image
(a base64 data URL of megabytes) is the same in reverse: its model and parameters are read by stepping
over the image's string, not by decoding it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from typing import Any

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_OBJECT_START = re.compile(rb"[ \t\n\r]*\{")
_DECODER = json.JSONDecoder()
_decode = _DECODER.raw_decode
_decode_text = _DECODER.decode  # json.loads of text, less its checks of the argument
_STRUCTURE = re.compile(rb'["\[\]{}]')  # what a value being stepped over has to be followed through
_WHITESPACE_BYTES = re.compile(rb"[ \t\n\r]*")
_SCALAR = re.compile(rb"[^ \t\n\r,}\]]*")  # a number, true, false or null
_QUOTE, _BACKSLASH, _OPENERS = ord('"'), ord("\\"), b"[{"
MAX_RUN = 256  # backslashes or whitespace looked back over; a longer run is not followed
LARGE_BODY = 64 << 10  # bytes past which a few members are better walked to than the whole body decoded
BYTES_PER_STEP = 4096  # a walk taking more steps than one per this many bytes would gain little


def decode_object(raw: bytes | str) -> dict[str, Any] | None:
    """The JSON object in `raw`, or None when it is not one: malformed, another kind of value, or nested
    deeper than Python decodes (which raises RecursionError, not ValueError). Never raises.

    What json.loads decodes, at less cost: bytes are read as UTF-8 first, and json.loads' detection of
    other encodings (a BOM, UTF-16 or UTF-32) runs only when that fails. Bytes that are none of those (a
    body sent in a charset such as ISO-8859-1, which JSON does not allow but `requests` reads) are read
    as Latin-1 last: the usage is ASCII whatever the charset, and every byte is a Latin-1 character.
    """
    try:
        try:
            value = _decode_text(raw.decode() if raw.__class__ is bytes else raw)
        except ValueError:
            if raw.__class__ is not bytes:
                return None
            try:
                value = json.loads(raw)
            except UnicodeDecodeError:
                value = _decode_text(raw.decode("latin-1"))
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
    try:
        before = start - 1 - _run_before(body, start, b" \t\n\r", 0)
        if before < 0 or body[before] not in b"{,":  # not where a member starts: in a string, or a value
            return None
        text = body[start:].decode()
        members, end = _members(text)
    except (ValueError, RecursionError):  # not JSON there (or nested beyond reason), or not UTF-8
        return None
    if end != len(text) or any(key not in members for key in found):
        return None  # nested deeper, or a key stands at the top level before the part decoded
    return members


def _members(text: str) -> tuple[dict[str, Any], int]:
    """Parse `"key": value, ... }` and the whitespace after it; return the members and where it stopped.

    Every member is decoded, so this reads text (a body's short tail); `_Walk` reads bytes, as it steps
    over most of a long body's values."""
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


def top_level_members(
    body: bytes, keys: Collection[str], max_steps: int | None = None, raw: Collection[str] = ()
) -> dict[str, Any] | None:
    """The members named in `keys` of the JSON object `body` (the last of each, as a full decode keeps),
    or None when `body` is not an object as far as is seen, or takes more than `max_steps` to walk (by
    default one per BYTES_PER_STEP bytes). Those also named in `raw` are given undecoded, as bytes.

    The other members' strings, arrays and objects are stepped over without being decoded: a step finds
    the next quote or bracket, and the closing quote of a string however long it is. A body whose bytes
    are mostly in a few long strings (an image as a base64 data URL) takes a few dozen steps; one made of
    many short strings takes more than a full decode would cost, and `max_steps` stops it first. What is
    stepped over is not checked: a malformed value there goes unnoticed.
    """
    return _walk(body, max_steps, lambda walk, index: walk.object_members(index, keys, raw))


def element_members(body: bytes, keys: Collection[str], max_steps: int | None = None) -> list[dict] | None:
    """The members named in `keys` of each object in the JSON array `body`, walked as `top_level_members`
    walks one object; None when `body` is not an array of objects as far as is seen."""
    return _walk(body, max_steps, lambda walk, index: walk.array_of_objects(index, keys))


def _walk(body: bytes, max_steps: int | None, value_at: Callable[[_Walk, int], tuple[Any, int]]) -> Any:
    """What `value_at` reads of the one JSON value `body` holds, or None (see `top_level_members`)."""
    if max_steps is None:
        max_steps = len(body) // BYTES_PER_STEP
    try:
        walk = _Walk(body, max_steps)
        value, end = value_at(walk, _WHITESPACE_BYTES.match(body).end())
    except (ValueError, RecursionError, IndexError):  # not JSON where it matters, too deep, or too long
        return None
    return value if _WHITESPACE_BYTES.match(body, end).end() == len(body) else None


class _Walk:
    """A walk over a JSON value's top level, counting its steps. Each method reads the value starting at
    `index` and returns what it read and where the value ends; ValueError when it is not that value."""

    __slots__ = ("body", "steps_left")

    def __init__(self, body: bytes, max_steps: int) -> None:
        self.body = body
        self.steps_left = max_steps

    def object_members(self, index: int, keys: Collection[str], raw: Collection[str]) -> tuple[dict, int]:
        """The members named in `keys` of an object (those in `raw` undecoded)."""
        body, members = self.body, {}
        ended, index = self.items_start(index, b"{", b"}")
        while not ended:
            if body[index] != _QUOTE:
                raise ValueError("a member's key is not a string")
            end = self.string_end(index + 1)
            key = _value(body[index:end])
            index = _WHITESPACE_BYTES.match(body, end).end()
            if body[index : index + 1] != b":":
                raise ValueError("no colon after a member's key")
            index = _WHITESPACE_BYTES.match(body, index + 1).end()
            end = self.value_end(index)
            if key in keys:
                members[key] = body[index:end] if key in raw else _value(body[index:end])
            ended, index = self.item_end(end, b"}")
        return members, index

    def array_of_objects(self, index: int, keys: Collection[str]) -> tuple[list[dict], int]:
        """The members named in `keys` of each element of an array of objects."""
        elements = []
        ended, index = self.items_start(index, b"[", b"]")
        while not ended:
            members, index = self.object_members(index, keys, ())
            elements.append(members)
            ended, index = self.item_end(index, b"]")
        return elements, index

    def items_start(self, index: int, opener: bytes, closer: bytes) -> tuple[bool, int]:
        """At an object's or array's opening bracket: whether it is empty (then where it ends), else
        where its first item starts."""
        body = self.body
        if body[index : index + 1] != opener:
            raise ValueError(f"not {opener!r}")
        index = _WHITESPACE_BYTES.match(body, index + 1).end()
        if body[index : index + 1] == closer:
            return True, index + 1
        return False, index

    def item_end(self, index: int, closer: bytes) -> tuple[bool, int]:
        """Past an item (a member or an element): whether the object or array ends (then where), else
        where its next item starts."""
        body = self.body
        index = _WHITESPACE_BYTES.match(body, index).end()
        separator = body[index : index + 1]
        if separator == closer:
            return True, index + 1
        if separator != b",":
            raise ValueError(f"an item is followed by neither a comma nor {closer!r}")
        return False, _WHITESPACE_BYTES.match(body, index + 1).end()

    def value_end(self, index: int) -> int:
        """Where the value starting at `index` ends, stepped over without being decoded."""
        first = self.body[index]
        if first == _QUOTE:
            return self.string_end(index + 1)
        if first in _OPENERS:
            return self.container_end(index + 1)
        return _SCALAR.match(self.body, index).end()

    def string_end(self, index: int) -> int:
        """Where the string whose content starts at `index` ends, past its closing quote."""
        body = self.body
        while True:
            self.steps_left -= 1
            if self.steps_left < 0:
                raise ValueError("too many steps")
            quote = body.index(b'"', index)
            if body[quote - 1] != _BACKSLASH or _run_before(body, quote, b"\\", index) % 2 == 0:
                return quote + 1  # not escaped
            index = quote + 1

    def container_end(self, index: int) -> int:
        """Where the array or object whose content starts at `index` ends, past its closing bracket."""
        body, search, depth = self.body, _STRUCTURE.search, 1
        while depth:
            self.steps_left -= 1
            if self.steps_left < 0:
                raise ValueError("too many steps")
            match = search(body, index)
            if match is None:
                raise ValueError("an array or object is not closed")
            index = match.end()
            found = body[index - 1]
            if found == _QUOTE:
                index = self.string_end(index)
            elif found in _OPENERS:
                depth += 1
            else:
                depth -= 1
        return index


def _value(raw: bytes) -> Any:
    """The one JSON value `raw` holds: json.loads without its encoding detection, for a short value."""
    return _decode_text(raw.decode())


def _run_before(body: bytes, end: int, chars: bytes, start: int) -> int:
    """How many bytes of `chars` stand right before `end` (and from `start` on); ValueError past MAX_RUN,
    so that a hostile run costs no more than a short one."""
    window = body[max(start, end - MAX_RUN) : end]
    run = len(window) - len(window.rstrip(chars))
    if run == MAX_RUN:
        raise ValueError("too long a run to look back over")
    return run
