"""Message content, recorded only when OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true.

Messages follow the GenAI conventions' JSON shape (`role`, `parts`), and each attribute is capped so
that a huge prompt cannot make telemetry huge.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from . import names
from .operations import Outcome, get

MAX_CHARS = 16_384
TRUNCATED = "...[truncated]"


def _capped(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - len(TRUNCATED)] + TRUNCATED


def _text_parts(content: Any) -> list[dict[str, str]]:
    if isinstance(content, str):
        return [{"type": "text", "content": content}]
    parts = []
    for part in content if isinstance(content, list) else ():
        text = get(part, "text") if isinstance(part, dict) or hasattr(part, "text") else None
        if isinstance(text, str):
            parts.append({"type": "text", "content": text})
    return parts


def _messages(body: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                yield {"role": str(message.get("role", "user")), "parts": _text_parts(message.get("content"))}
        return
    prompt = body.get("input", body.get("prompt"))
    if isinstance(prompt, str):
        yield {"role": "user", "parts": _text_parts(prompt)}
    elif isinstance(prompt, list):
        for item in prompt:
            if isinstance(item, dict):
                yield {"role": str(item.get("role", "user")), "parts": _text_parts(item.get("content"))}
            elif isinstance(item, str):
                yield {"role": "user", "parts": _text_parts(item)}


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


def read_output(outcome: Outcome, response: Any) -> None:
    """Collect the text a whole response returned into `outcome.texts`."""
    texts = outcome.texts if outcome.texts is not None else []
    for choice in get(response, "choices") or ():
        message = get(choice, "message")
        text = get(message, "content") if message is not None else get(choice, "text")
        if isinstance(text, str):
            texts.append(text)
    for item in get(response, "output") or ():
        for part in get(item, "content") or ():
            text = get(part, "text")
            if isinstance(text, str):
                texts.append(text)
    outcome.texts = texts


def read_chunk_output(outcome: Outcome, chunk: Any) -> None:
    """Add a stream chunk's text to `outcome.texts`."""
    if get(chunk, "type") in ("response.completed", "response.incomplete"):
        outcome.texts = []
        read_output(outcome, get(chunk, "response"))
        return
    texts = outcome.texts if outcome.texts is not None else []
    for choice in get(chunk, "choices") or ():
        delta = get(choice, "delta")
        text = get(delta, "content") if delta is not None else get(choice, "text")
        if isinstance(text, str) and len(texts) < MAX_CHARS:  # enough pieces to fill the cap
            texts.append(text)
    outcome.texts = texts


def output_attributes(outcome: Outcome) -> dict[str, str]:
    """`gen_ai.output.messages` from the collected text."""
    if not outcome.texts:
        return {}
    message = {"role": "assistant", "parts": _text_parts("".join(outcome.texts))}
    if outcome.finish_reasons:
        message["finish_reason"] = outcome.finish_reasons[0]
    return {names.OUTPUT_MESSAGES: _capped([message])}
