"""Message content, recorded only when OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true.

Messages follow the GenAI conventions' JSON shape: a `role` and `parts` (text, refusals as text, the
model's reasoning, the tool calls it made and their results), and one output message per generation
(choice) with its finish reason. Images and audio are left out, and so are the Responses API's items
that are neither messages, reasoning nor the app's own tool calls (built-in tools, item references).
Each attribute is capped so that a huge prompt cannot make telemetry huge.
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
CALL_ITEMS = ("function_call", "custom_tool_call")  # Responses items: a call of the app's tools
OUTPUT_ITEMS = ("function_call_output", "custom_tool_call_output")  # and the app's answer to it


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
    """The texts of a message's content: a string, or a list of parts with `text` or a `refusal` (images
    and audio are not text)."""
    if isinstance(content, str):
        return [content]
    texts = []
    for part in content if isinstance(content, list) else ():
        if part is None or isinstance(part, SCALARS):
            continue
        text = get(part, "text")
        if text is None and get(part, "type") == "refusal":
            text = get(part, "refusal")
        if isinstance(text, str):
            texts.append(text)
    return texts


def _text_parts(content: Any) -> list[dict[str, Any]]:
    return [{"type": "text", "content": text} for text in _texts(content)]


def _refusal_parts(refusal: Any) -> list[dict[str, Any]]:
    """A Chat Completions refusal as a text part (the conventions have no refusal part)."""
    return [{"type": "text", "content": refusal}] if isinstance(refusal, str) and refusal else []


def _reasoning_parts(item: Any) -> list[dict[str, Any]]:
    """A Responses reasoning item's text (else its summary) as reasoning parts; none if encrypted."""
    texts = _texts(get(item, "content")) or _texts(get(item, "summary"))
    return [{"type": "reasoning", "content": text} for text in texts]


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


def _string(value: Any, absent: str | None = "") -> str | None:
    """`value` as the string a part's member must be: itself, its JSON text, or `absent` for None."""
    if isinstance(value, str):
        return value
    if value is None:
        return absent
    value = _shallow(value)
    return value if isinstance(value, str) else _dumps(value)


def _tool_call(call_id: Any, name: Any, arguments: Any, raw: bool = False) -> dict[str, Any]:
    """A tool call part: its arguments decoded from JSON, or as written where `raw` (a custom tool's)."""
    return {
        "type": "tool_call",
        "id": _string(call_id, None),
        "name": _string(name),
        "arguments": _shallow(arguments) if raw else _arguments(arguments),
    }


def _tool_result(call_id: Any, result: Any) -> dict[str, Any]:
    return {"type": "tool_call_response", "id": _string(call_id, None), "response": _shallow(result)}


def _function(call: Any) -> tuple[Any, Any, bool]:
    """A Chat Completions tool call's name, arguments and whether they are raw: a function's
    (`{"function": {"name", "arguments"}}`) or a custom tool's (`{"custom": {"name", "input"}}`)."""
    function = get(call, "function")
    if function is not None:
        return get(function, "name"), get(function, "arguments"), False
    custom = get(call, "custom")
    return (None, None, False) if custom is None else (get(custom, "name"), get(custom, "input"), True)


def _chat_tool_call(call: Any) -> dict[str, Any]:
    return _tool_call(get(call, "id"), *_function(call))


def _add_chat_call(generation: Generation, index: Any, call: Any) -> None:
    """A Chat Completions tool call, or a stream's piece of one, added to its generation."""
    generation.add_call(index, get(call, "id"), *_function(call))


def _item_call(item: Any, kind: Any) -> dict[str, Any]:
    """A Responses function or custom tool call item as a tool call part."""
    if kind == "custom_tool_call":
        return _tool_call(get(item, "call_id"), get(item, "name"), get(item, "input"), raw=True)
    return _tool_call(get(item, "call_id"), get(item, "name"), get(item, "arguments"))


def _item_result(item: Any) -> dict[str, Any]:
    """A Responses tool call output item as a tool call response: a list output keeps its texts only."""
    output = get(item, "output")
    return _tool_result(get(item, "call_id"), "".join(_texts(output)) if isinstance(output, list) else output)


def _message(message: Any) -> dict[str, Any] | None:
    """A chat message, or a Responses API input item, in the conventions' shape; None for an item that
    is not recorded."""
    kind = get(message, "type")
    if kind is None or kind == "message":
        return _chat_message(message)
    if kind in CALL_ITEMS:  # a call the model made
        return {"role": "assistant", "parts": [_item_call(message, kind)]}
    if kind in OUTPUT_ITEMS:  # the app's answer to it
        return {"role": "tool", "parts": [_item_result(message)]}
    if kind == "reasoning":
        parts = _reasoning_parts(message)
        return {"role": "assistant", "parts": parts} if parts else None
    return None


def _chat_message(message: Any) -> dict[str, Any]:
    role, content = get(message, "role") or "user", get(message, "content")
    if role == "tool":
        result = content if isinstance(content, str) else "".join(_texts(content))
        return {"role": role, "parts": [_tool_result(get(message, "tool_call_id"), result)]}
    reasoning = _chat_reasoning(message)
    parts = [{"type": "reasoning", "content": reasoning}] if reasoning is not None else []
    parts += _text_parts(content) + _refusal_parts(get(message, "refusal"))
    parts += [_chat_tool_call(call) for call in _listed(get(message, "tool_calls"))]
    return {"role": str(_shallow(role)), "parts": parts}


def _messages(body: Mapping[str, Any]) -> Iterator[dict[str, Any] | None]:
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
    messages = [message for message in _messages(body) if message is not None]
    if messages:
        attributes[names.INPUT_MESSAGES] = _capped(messages)
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        attributes[names.SYSTEM_INSTRUCTIONS] = _capped(_text_parts(instructions))
    return attributes


class Generation:
    """One choice's output as it is read: its text and refusal (in pieces, as a stream brings them), the
    tool calls it made, the parts read whole (a Responses output's, in order), and why it finished."""

    __slots__ = ("calls", "finish_reason", "parts", "reasonings", "refusals", "texts")

    def __init__(self) -> None:
        self.reasonings: list[str] = []
        self.texts: list[str] = []
        self.refusals: list[str] = []
        self.parts: list[dict[str, Any]] = []
        self.calls: dict[Any, list[Any]] = {}  # index -> [id, name, argument pieces, raw]
        self.finish_reason: Any = None

    def add_call(self, index: Any, call_id: Any, name: Any, arguments: Any, raw: bool = False) -> None:
        """A tool call, or the next piece of one in a stream (its id and name come first)."""
        call = self.calls.setdefault(index, [None, None, [], raw])
        call[0], call[1], call[3] = call[0] or call_id, call[1] or name, call[3] or raw
        if isinstance(arguments, str) and len(call[2]) < MAX_CHARS:
            call[2].append(arguments)

    def add_asides(self, message: Any) -> None:
        """A chat message's (or a stream delta's) reasoning and refusal, beside its text."""
        reasoning, refusal = _chat_reasoning(message), get(message, "refusal")
        if reasoning is not None and len(self.reasonings) < MAX_CHARS:  # enough pieces to fill the cap
            self.reasonings.append(reasoning)
        if isinstance(refusal, str) and len(self.refusals) < MAX_CHARS:
            self.refusals.append(refusal)

    def message(self, finish_reason: Any) -> dict[str, Any]:
        parts = self.parts[:]
        if self.reasonings:
            parts.append({"type": "reasoning", "content": "".join(self.reasonings)})
        if self.texts:
            parts += _text_parts("".join(self.texts))
        parts += _refusal_parts("".join(self.refusals))
        parts += [
            _tool_call(call_id, name, "".join(pieces), raw)
            for call_id, name, pieces, raw in self.calls.values()
        ]
        message: dict[str, Any] = {"role": "assistant", "parts": parts}
        reason = self.finish_reason or finish_reason
        if reason:
            message["finish_reason"] = reason if isinstance(reason, str) else _dumps(_shallow(reason))
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
        if message is not None:
            _read_message_extras(generation, message)
        generation.finish_reason = get(choice, "finish_reason")
    # The Responses API: one generation, its items' parts in order. A compaction's output repeats the
    # user's messages (input, not generated) before its compaction item (encrypted: nothing to read).
    generated = [item for item in _listed(get(response, "output")) if not _input_or_compaction(item)]
    if generated:
        parts = _generation(outcome, 0).parts
        for item in generated:
            parts += _output_item_parts(item)


def _read_message_extras(generation: Generation, message: Any) -> None:
    """A whole chat message's reasoning, refusal and tool calls."""
    generation.add_asides(message)
    for number, call in enumerate(_listed(get(message, "tool_calls"))):
        _add_chat_call(generation, number, call)


def _chat_reasoning(message: Any) -> str | None:
    """The reasoning a chat message or delta carries beside its text, as OpenAI-compatible servers add it:
    `reasoning_content` (DeepSeek, vLLM, Qwen) or `reasoning` (OpenRouter, Groq)."""
    reasoning = get(message, "reasoning_content")
    if reasoning is None:
        reasoning = get(message, "reasoning")
    return reasoning if isinstance(reasoning, str) and reasoning else None


def _output_item_parts(item: Any) -> list[dict[str, Any]]:
    """A Responses output item's parts: a message's texts and refusals (a part each), reasoning, the
    app's tool calls; none for other items (built-in tools' calls)."""
    kind = get(item, "type")
    if kind is None or kind == "message":
        return _text_parts(get(item, "content"))
    if kind in CALL_ITEMS:
        return [_item_call(item, kind)]
    return _reasoning_parts(item) if kind == "reasoning" else []


def _input_or_compaction(item: Any) -> bool:
    return get(item, "role") in INPUT_ROLES or get(item, "type") == "compaction"


def read_chunk_output(outcome: Outcome, chunk: Any) -> None:
    """Add a stream chunk's pieces (text, reasoning, refusal, tool calls) to its choice's generation."""
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
        if delta is not None:
            generation.add_asides(delta)
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
