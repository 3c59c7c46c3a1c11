"""The span attributes a request body gives: its parameters, as the GenAI semantic conventions name them.

Each member of the body is looked up once in a table of the members recorded, so that a body with few
parameters (the usual one) costs few lookups.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import names

# Chat Completions' `response_format` and the Responses API's `text.format` type, as `gen_ai.output.type`.
OUTPUT_TYPES = {"json_object": "json", "json_schema": "json", "text": "text"}


def _token_limit(value: Any) -> int | None:
    """A token limit, an int whether the app wrote `500` or `500.0` (a fraction is no limit)."""
    if value.__class__ is float and value.is_integer():
        return int(value)
    return value if value.__class__ is int else None


def _double(value: Any) -> float | None:
    """A sampling parameter, a double whether the app wrote `1` or `1.0`."""
    return float(value) if value.__class__ in (int, float) else None


def _integer(value: Any) -> int | None:
    return value if value.__class__ is int else None


def _choice_count(value: Any) -> int | None:
    """`n`, recorded when it asks for more than one choice."""
    return value if value.__class__ is int and value != 1 else None


def _strings(value: Any) -> tuple[str, ...] | None:
    """One string or a list of them (`stop`, `encoding_format`), as a string array."""
    if value.__class__ is str:
        return (value,)
    if value.__class__ is list and value and all(item.__class__ is str for item in value):
        return tuple(value)
    return None


def _stream(value: Any) -> bool | None:
    return True if value is True else None


def _chat_output_type(response_format: Any) -> str | None:
    """`response_format: {"type": "json_schema", ...}` -> `json`."""
    kind = response_format.get("type") if response_format.__class__ is dict else None
    return OUTPUT_TYPES.get(kind) if kind.__class__ is str else None


def _responses_output_type(text: Any) -> str | None:
    """The Responses API's `text: {"format": {"type": "json_schema", ...}}` -> `json`."""
    text_format = text.get("format") if text.__class__ is dict else None
    return _chat_output_type(text_format)


def _modalities_output_type(modalities: Any) -> str | None:
    """Chat Completions' `modalities: ["text", "audio"]` -> `speech`."""
    return "speech" if modalities.__class__ is list and "audio" in modalities else None


def _conversation_id(conversation: Any) -> str | None:
    """The Responses API's `conversation`: its id, or an object with one."""
    if conversation.__class__ is dict:
        conversation = conversation.get("id")
    return conversation if conversation.__class__ is str and conversation else None


# Body member -> (attribute, the value recorded, or None for none). `model` is the span's own.
RECORDED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "max_tokens": (names.REQUEST_MAX_TOKENS, _token_limit),
    "max_completion_tokens": (names.REQUEST_MAX_TOKENS, _token_limit),
    "max_output_tokens": (names.REQUEST_MAX_TOKENS, _token_limit),
    "temperature": (names.REQUEST_TEMPERATURE, _double),
    "top_p": (names.REQUEST_TOP_P, _double),
    "top_k": (names.REQUEST_TOP_K, _double),  # vLLM's and others', sent in `extra_body`
    "frequency_penalty": (names.REQUEST_FREQUENCY_PENALTY, _double),
    "presence_penalty": (names.REQUEST_PRESENCE_PENALTY, _double),
    "stop": (names.REQUEST_STOP_SEQUENCES, _strings),
    "seed": (names.REQUEST_SEED, _integer),
    "n": (names.REQUEST_CHOICE_COUNT, _choice_count),
    "stream": (names.REQUEST_STREAM, _stream),
    "response_format": (names.OUTPUT_TYPE, _chat_output_type),
    "text": (names.OUTPUT_TYPE, _responses_output_type),
    "modalities": (names.OUTPUT_TYPE, _modalities_output_type),
    "conversation": (names.CONVERSATION_ID, _conversation_id),
    "encoding_format": (names.REQUEST_ENCODING_FORMATS, _strings),  # embeddings
    "dimensions": (names.EMBEDDINGS_DIMENSION_COUNT, _integer),
}
SERVICE_TIER = "service_tier"  # recorded for OpenAI's own API only, as `openai.request.service_tier`
# The members of a request body a call reads, message content aside (read only when it is captured).
REQUEST_KEYS = frozenset({"model", SERVICE_TIER, *RECORDED})


def add_request_attributes(body: Mapping[str, Any], attributes: dict[str, Any], is_openai: bool) -> None:
    """Add the attributes of the request's parameters to `attributes`."""
    recorded = RECORDED.get
    for key in body:
        found = recorded(key)
        if found is not None:
            value = found[1](body[key])
            if value is not None:
                attributes[found[0]] = value
    if is_openai:
        tier = body.get(SERVICE_TIER)
        if tier.__class__ is str and tier and tier != "auto":  # as the semantic conventions ask
            attributes[names.OPENAI_REQUEST_SERVICE_TIER] = tier
