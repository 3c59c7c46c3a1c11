"""Message content, recorded only when OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true.

Messages follow the GenAI conventions' JSON shape: a `role` and `parts` (text, the tool calls a model
made and their results), and one output message per generation (choice) with its finish reason. Each
attribute is capped so that a huge prompt cannot make telemetry huge.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from . import names
from .operations import Outcome, get

MAX_CHARS = 16_384
TRUNCATED = "...[truncated]"
MIN_KEPT = 64  # characters kept of each long string before whole messages are left out
MAX_NESTING = 64  # tool arguments and results nested deeper are recorded as JSON text
SCALARS = (str, int, float, bool, list)  # not a message
JSON_LEAVES = (str, int, float, bool, type(None))
INPUT_ROLES = ("user", "system", "developer")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _capped(messages: list) -> str:
    """`messages` as JSON of at most MAX_CHARS, still valid and in the conventions' shape: the longest
    strings (texts, tool arguments and results) are cut first, each ending in TRUNCATED; where that
    would leave each fewer than MIN_KEPT characters, the oldest messages are left out instead."""
    text = _dumps(messages)
    if len(text) <= MAX_CHARS:
        return text
    fitting = _shortened(messages, len(text), MIN_KEPT)
    if fitting is None:  # the fewest oldest messages to leave out
        first, last = 1, len(messages) - 1
        while first <= last:
            middle = (first + last) // 2
            text = _shortened(messages[middle:], None, MIN_KEPT)
            if text is None:
                first = middle + 1
            else:
                fitting, last = text, middle - 1
    return fitting or _shortened(messages[-1:], None, 0) or "[]"


def _shortened(value: Any, length: int | None, min_kept: int) -> str | None:
    """`value` as JSON (`length` long, if known) with its longest strings cut to one length, so that it
    fits MAX_CHARS; None if they would keep fewer than `min_kept` characters."""
    if length is None:
        text = _dumps(value)
        if len(text) <= MAX_CHARS:
            return text
        length = len(text)
    for _ in range(8):  # escapes make lengths approximate: cut again while it does not fit
        escaped = sorted((_escaped_length(text) for text in _strings(value)), reverse=True)
        keep = _longest_kept(escaped, length - MAX_CHARS)
        if keep < min_kept:
            return None
        value = _cut(value, keep)
        text = _dumps(value)
        if len(text) <= MAX_CHARS:
            return text
        length = len(text)
    return None


def _longest_kept(lengths: list[int], excess: int) -> int:
    """The longest a string may stay so that cutting every longer one (and marking it) saves `excess`
    characters; `lengths` longest first."""
    marker, total = len(TRUNCATED), 0
    for count, length in enumerate(lengths, start=1):
        total += length
        # Cutting the `count` longest to `keep` saves total - count * (keep + marker).
        keep = (total - excess) // count - marker
        if keep >= (lengths[count] if count < len(lengths) else 0):
            return max(keep, 0)
    return 0


def _escaped_length(text: str) -> int:
    return len(text) if text.isascii() and text.isalnum() else len(_dumps(text)) - 2


def _strings(value: Any) -> Iterator[str]:
    """The strings in `value`, anything JSON has no form for (written as its `str()`) among them."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for member in value.values():
            yield from _strings(member)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
    elif not isinstance(value, JSON_LEAVES):
        yield str(value)


def _cut(value: Any, keep: int) -> Any:
    """A copy of `value` whose strings longer than `keep` (as JSON writes them) are cut to about that
    length and marked."""
    if isinstance(value, str):
        if len(value) <= keep:
            return value
        escaped = _escaped_length(value)
        if escaped <= keep + len(TRUNCATED):
            return value
        return value[: keep * len(value) // escaped] + TRUNCATED
    if isinstance(value, dict):
        return {key: _cut(member, keep) for key, member in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cut(item, keep) for item in value]
    return value if isinstance(value, JSON_LEAVES) else _cut(str(value), keep)


def _texts(content: Any) -> list[str]:
    """The texts of a message's content: a string, or a list of parts with `text` (images and audio are
    not text)."""
    if isinstance(content, str):
        return [content]
    texts = []
    for part in content if isinstance(content, list) else ():
        text = get(part, "text") if part is not None and not isinstance(part, SCALARS) else None
        if isinstance(text, str):
            texts.append(text)
    return texts


def _text_parts(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "content": text} for text in _texts(content)]


def _listed(value: Any) -> list:
    """A member that should be a list (`choices`, `tool_calls`), or none when it is anything else."""
    return value if isinstance(value, list) else []


def _arguments(value: Any) -> Any:
    """A tool call's arguments: the object the model wrote (JSON in a string), else as they came; the
    string as sent where the object is nested past MAX_NESTING."""
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except (ValueError, RecursionError):
            return value
        return decoded if _nested_within(decoded, MAX_NESTING) else value
    return _shallow(value)


def _shallow(value: Any) -> Any:
    """`value`, or its JSON text where it is nested past MAX_NESTING (too deep to walk when cut)."""
    if _nested_within(value, MAX_NESTING):
        return value
    try:
        return _dumps(value)
    except (RecursionError, ValueError):
        return TRUNCATED


def _nested_within(value: Any, limit: int) -> bool:
    """Whether `value`'s lists and objects nest at most `limit` deep (walked without recursion)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, (list, tuple)):
            continue
        if depth == limit:
            return False
        stack.extend((child, depth + 1) for child in item)
    return True


def _tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    return {
        "type": "tool_call",
        "id": _shallow(call_id),
        "name": _shallow(name),
        "arguments": _arguments(arguments),
    }


def _tool_result(call_id: Any, result: Any) -> dict[str, Any]:
    return {"type": "tool_call_response", "id": _shallow(call_id), "result": _shallow(result)}


def _function(call: Any) -> tuple[Any, Any]:
    """A Chat Completions tool call's (`{"id", "function": {"name", "arguments"}}`) name and arguments."""
    function = get(call, "function")
    return (None, None) if function is None else (get(function, "name"), get(function, "arguments"))


def _chat_tool_call(call: Any) -> dict[str, Any]:
    return _tool_call(get(call, "id"), *_function(call))


def _add_chat_call(generation: Generation, index: Any, call: Any) -> None:
    """A Chat Completions tool call, or a stream's piece of one, added to its generation."""
    generation.add_call(index, get(call, "id"), *_function(call))


def _message(message: Any) -> dict[str, Any]:
    """A chat message, or a Responses API input item, in the conventions' shape."""
    kind = get(message, "type")
    if kind == "function_call":  # Responses: a call the model made
        call = _tool_call(get(message, "call_id"), get(message, "name"), get(message, "arguments"))
        return {"role": "assistant", "parts": [call]}
    if kind == "function_call_output":  # Responses: the app's answer to it
        return {"role": "tool", "parts": [_tool_result(get(message, "call_id"), get(message, "output"))]}
    role, content = get(message, "role") or "user", get(message, "content")
    if role == "tool":
        result = content if isinstance(content, str) else "".join(_texts(content))
        return {"role": role, "parts": [_tool_result(get(message, "tool_call_id"), result)]}
    parts = _text_parts(content)
    parts += [_chat_tool_call(call) for call in _listed(get(message, "tool_calls"))]
    return {"role": str(_shallow(role)), "parts": parts}


def _messages(body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if message is not None and not isinstance(message, SCALARS):  # a dict, or an SDK message
                yield _message(message)
        return
    prompt = body.get("input", body.get("prompt"))
    if isinstance(prompt, str):
        yield {"role": "user", "parts": _text_parts(prompt)}
    elif isinstance(prompt, list):
        for item in prompt:
            if isinstance(item, str):
                yield {"role": "user", "parts": _text_parts(item)}
            elif item is not None and not isinstance(item, SCALARS):
                yield _message(item)


def input_attributes(body: Mapping[str, Any]) -> dict[str, str]:
    """`gen_ai.input.messages` (and `gen_ai.system_instructions`) from a request body."""
    attributes = {}
    messages = list(_messages(body))
    if messages:
        attributes[names.INPUT_MESSAGES] = _capped(messages)
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        attributes[names.SYSTEM_INSTRUCTIONS] = _capped(_text_parts(instructions))
    return attributes


class Generation:
    """One choice's output as it is read: its text (in pieces, as a stream brings it), the tool calls
    it made, and why it finished."""

    __slots__ = ("calls", "finish_reason", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.calls: dict[Any, list[Any]] = {}  # index -> [id, name, argument pieces]
        self.finish_reason: Any = None

    def add_call(self, index: Any, call_id: Any, name: Any, arguments: Any) -> None:
        """A tool call, or the next piece of one in a stream (its id and name come first)."""
        call = self.calls.setdefault(index, [None, None, []])
        call[0], call[1] = call[0] or call_id, call[1] or name
        if isinstance(arguments, str) and len(call[2]) < MAX_CHARS:
            call[2].append(arguments)

    def message(self, finish_reason: Any) -> dict[str, Any]:
        parts: list[dict[str, Any]] = _text_parts("".join(self.texts)) if self.texts else []
        parts += [_tool_call(call_id, name, "".join(pieces)) for call_id, name, pieces in self.calls.values()]
        message: dict[str, Any] = {"role": "assistant", "parts": parts}
        reason = self.finish_reason or finish_reason
        if reason:
            message["finish_reason"] = reason
        return message


def _generation(outcome: Outcome, index: Any) -> Generation:
    generations = outcome.generations
    if generations is None:
        generations = outcome.generations = {}
    generation = generations.get(index)
    if generation is None:
        generation = generations[index] = Generation()
    return generation


def read_output(outcome: Outcome, response: Any) -> None:
    """Collect what a whole response returned, choice by choice, into `outcome.generations`."""
    for position, choice in enumerate(_listed(get(response, "choices"))):
        index = get(choice, "index")
        generation = _generation(outcome, index if isinstance(index, int) else position)
        message = get(choice, "message")
        text = get(message, "content") if message is not None else get(choice, "text")
        if isinstance(text, str):
            generation.texts.append(text)
        for number, call in enumerate(_listed(get(message, "tool_calls")) if message is not None else ()):
            _add_chat_call(generation, number, call)
        generation.finish_reason = get(choice, "finish_reason")
    # The Responses API: one generation, its items' text and calls. A compaction's output repeats the
    # user's messages (input, not generated) before its compaction item (encrypted: nothing to read).
    generated = [item for item in _listed(get(response, "output")) if not _input_or_compaction(item)]
    if generated:
        generation = _generation(outcome, 0)
        for number, item in enumerate(generated):
            if get(item, "type") == "function_call":
                generation.add_call(number, get(item, "call_id"), get(item, "name"), get(item, "arguments"))
            for part in _listed(get(item, "content")):
                text = get(part, "text")
                if isinstance(text, str):
                    generation.texts.append(text)


def _input_or_compaction(item: Any) -> bool:
    return get(item, "role") in INPUT_ROLES or get(item, "type") == "compaction"


def read_chunk_output(outcome: Outcome, chunk: Any) -> None:
    """Add a stream chunk's text and tool-call pieces to its choice's generation."""
    if get(chunk, "type") in ("response.completed", "response.incomplete"):
        outcome.generations = None  # the final event repeats the whole response
        read_output(outcome, get(chunk, "response"))
        return
    for choice in _listed(get(chunk, "choices")):
        index = get(choice, "index")
        generation = _generation(outcome, index if isinstance(index, int) else 0)
        delta = get(choice, "delta")
        text = get(delta, "content") if delta is not None else get(choice, "text")
        if isinstance(text, str) and len(generation.texts) < MAX_CHARS:  # enough pieces to fill the cap
            generation.texts.append(text)
        for call in _listed(get(delta, "tool_calls")) if delta is not None else ():
            _add_chat_call(generation, get(call, "index"), call)
        reason = get(choice, "finish_reason")
        if reason:
            generation.finish_reason = reason


def output_attributes(outcome: Outcome, failed: bool = False) -> dict[str, str]:
    """`gen_ai.output.messages`: one message per generation, in choice order. A generation the call's
    failure cut short (a stream broken off) finishes with `error`."""
    generations = outcome.generations
    if not generations:
        return {}
    # A Responses generation finishes as the response does (its status, read apart).
    reason = outcome.finish_reasons[0] if len(generations) == 1 and outcome.finish_reasons else None
    reason = reason or ("error" if failed else None)
    ordered = sorted(generations.items(), key=lambda item: item[0])
    return {names.OUTPUT_MESSAGES: _capped([generation.message(reason) for _, generation in ordered])}
