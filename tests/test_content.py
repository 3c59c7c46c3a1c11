"""Captured message content against the GenAI semantic conventions v1.41 JSON schemas.

The real SDK calls the package's local server, which answers with verbatim bodies; every captured
attribute is checked against its schema (vendored under tests/data/semconv/) by `schema_errors`, a small
reading of the JSON Schema keywords those files use (jsonschema is not a test dependency). As the
schemas let any unknown part through as a generic part, a part of a known type must match that type's
own definition.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import openai
import pytest

from otel_tokencost import names

SCHEMA_FILES = Path(__file__).resolve().parent / "data" / "semconv"
SCHEMAS = {
    names.INPUT_MESSAGES: json.loads((SCHEMA_FILES / "gen-ai-input-messages.json").read_text()),
    names.OUTPUT_MESSAGES: json.loads((SCHEMA_FILES / "gen-ai-output-messages.json").read_text()),
    names.SYSTEM_INSTRUCTIONS: json.loads((SCHEMA_FILES / "gen-ai-system-instructions.json").read_text()),
}
JSON_TYPES = {"string": str, "object": dict, "array": list, "null": type(None)}
HAS_RESPONSES = hasattr(openai.OpenAI(api_key="x", base_url="http://127.0.0.1:1"), "responses")
needs_responses = pytest.mark.skipif(not HAS_RESPONSES, reason="this openai has no Responses API")
USER = {"role": "user", "content": "Hi"}
IMAGE = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"


def schema_errors(value: Any, schema: dict, defs: dict, path: str = "$") -> list[str]:
    """Where `value` breaks `schema` (the keywords the conventions' schemas use)."""
    if "$ref" in schema:
        return schema_errors(value, defs[schema["$ref"].rsplit("/", 1)[1]], defs, path)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            passing = sum(not schema_errors(value, option, defs, path) for option in schema[key])
            if passing == 0 or (key == "oneOf" and passing > 1):
                return [f"{path}: {passing} of {key} match"]
    kind = schema.get("type")
    if kind is not None and not isinstance(value, JSON_TYPES[kind]):
        return [f"{path}: {value!r:.60} is not of type {kind}"]
    if "const" in schema and value != schema["const"]:
        return [f"{path}: {value!r:.60} is not {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{path}: {value!r:.60} is not one of {schema['enum']}"]
    errors = []
    if isinstance(value, dict):
        errors += [f"{path}: {key!r} is required" for key in schema.get("required", ()) if key not in value]
        properties = schema.get("properties", {})
        for key, member in value.items():
            if key in properties:
                errors += schema_errors(member, properties[key], defs, f"{path}.{key}")
            elif schema.get("additionalProperties", True) is False:
                errors.append(f"{path}: {key!r} is not allowed")
    if isinstance(value, list) and "items" in schema:
        for number, item in enumerate(value):
            errors += schema_errors(item, schema["items"], defs, f"{path}[{number}]")
    return errors


def check(name: str, value: Any) -> list[str]:
    """Where a captured attribute's value breaks its schema; a part of a known type must match its own
    definition (the schemas' generic part would let any part through)."""
    schema = SCHEMAS[name]
    defs = schema["$defs"]
    errors = schema_errors(value, schema, defs)
    known = {
        definition["properties"]["type"]["const"]: definition
        for definition in defs.values()
        if "const" in definition.get("properties", {}).get("type", {})
    }
    messages = [{"parts": value}] if name == names.SYSTEM_INSTRUCTIONS else value
    for message in messages if isinstance(messages, list) else ():
        for part in message.get("parts", ()) if isinstance(message, dict) else ():
            if isinstance(part, dict) and part.get("type") in known:
                errors += schema_errors(part, known[part["type"]], defs, f"part {part}")
    return errors


def captured(telemetry) -> dict[str, Any]:
    """The span's captured content, decoded, each attribute checked against its v1.41 schema."""
    attributes = telemetry.span().attributes
    decoded = {}
    for name in SCHEMAS:
        if name in attributes:
            decoded[name] = json.loads(attributes[name])
            errors = check(name, decoded[name])
            assert not errors, (name, errors, decoded[name])
    return decoded


def raw_reply(body: dict | list) -> dict:
    """Headers that have the local server answer with `body`: a JSON object, or a stream's events."""
    if isinstance(body, dict):
        data, kind = json.dumps(body), "application/json"
    else:
        data = "".join(f"data: {json.dumps(event)}\n\n" for event in body) + "data: [DONE]\n\n"
        kind = "text/event-stream"
    return {"x-mock-raw-body-b64": base64.b64encode(data.encode()).decode(), "x-mock-content-type": kind}


def completion(*messages: dict, finish_reason: str = "stop") -> dict:
    """A Chat Completions reply with a choice per message."""
    choices = [
        {"index": index, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}
        for index, message in enumerate(messages)
    ]
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": choices,
        "usage": usage,
    }


def chunk(index: int, delta: dict, finish_reason: str | None = None) -> dict:
    choice = {"index": index, "delta": delta, "finish_reason": finish_reason}
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}


def response(*output: dict, status: str = "completed") -> dict:
    """A Responses API reply with these output items."""
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": "gpt-5",
        "output": list(output),
        "usage": {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }


def said(*parts: dict, item_id: str = "msg_1") -> dict:
    """A Responses output message item with these content parts."""
    return {
        "type": "message",
        "id": item_id,
        "status": "completed",
        "role": "assistant",
        "content": list(parts),
    }


def output_text(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": []}


def text(content: str) -> dict:
    return {"type": "text", "content": content}


def reasoning_part(content: str) -> dict:
    return {"type": "reasoning", "content": content}


REASONING = {
    "type": "reasoning",
    "id": "rs_1",
    "summary": [{"type": "summary_text", "text": "Thinking about it"}],
    "content": [{"type": "reasoning_text", "text": "secret chain"}],
}
SUMMARY_ONLY = {"type": "reasoning", "id": "rs_2", "summary": [{"type": "summary_text", "text": "In short"}]}
ENCRYPTED = {"type": "reasoning", "id": "rs_3", "summary": [], "encrypted_content": "gAAAAB"}
FUNCTION_CALL = {
    "type": "function_call",
    "id": "fc_1",
    "call_id": "call_1",
    "name": "weather",
    "arguments": '{"city": "Paris"}',
    "status": "completed",
}
CALL_PART = {"type": "tool_call", "id": "call_1", "name": "weather", "arguments": {"city": "Paris"}}
CHAT_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
}
CUSTOM_CALL = {"id": "call_c", "type": "custom", "custom": {"name": "sql", "input": '{"not": "json args"}'}}
CUSTOM_PART = {"type": "tool_call", "id": "call_c", "name": "sql", "arguments": '{"not": "json args"}'}


def test_the_schema_check_rejects_the_shapes_the_review_found() -> None:
    """The hand-written check catches what the schemas forbid, in parts of known types too."""
    old_result = {"type": "tool_call_response", "id": "c", "result": "42"}
    nameless = {"type": "tool_call", "id": "c", "name": None, "arguments": ""}
    for part in (old_result, nameless, {"type": "reasoning"}, {"type": "text", "content": 1}):
        assert check(names.INPUT_MESSAGES, [{"role": "user", "parts": [part]}]), part
        assert check(names.SYSTEM_INSTRUCTIONS, [part]), part
    assert check(names.INPUT_MESSAGES, [{"role": "user"}])
    assert check(names.OUTPUT_MESSAGES, [{"role": "assistant", "parts": []}])  # no finish_reason
    result = {"type": "tool_call_response", "id": None, "response": [1]}
    assert not check(names.INPUT_MESSAGES, [{"role": "tool", "parts": [result, {"type": "custom", "x": 1}]}])


# 4. Tool results are tool_call_response parts with a `response`.


def test_chat_tool_messages_are_tool_call_responses(capturing, client) -> None:
    history = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [CHAT_CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "rainy"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "sunny"}]},
    ]
    client.chat.completions.create(model="gpt-4o", messages=history, extra_headers=raw_reply(completion()))
    assert captured(capturing)[names.INPUT_MESSAGES][1:] == [
        {"role": "assistant", "parts": [CALL_PART]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rainy"}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_2", "response": "sunny"}]},
    ]


@needs_responses
def test_responses_function_call_outputs_are_tool_call_responses(capturing, client) -> None:
    history = [
        USER,
        {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "rainy"},
    ]
    client.responses.create(model="gpt-5", input=history, extra_headers=raw_reply(response(said())))
    assert captured(capturing)[names.INPUT_MESSAGES][1:] == [
        {"role": "assistant", "parts": [CALL_PART]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_1", "response": "rainy"}]},
    ]


# 5. Reasoning is a reasoning part, never answer or user text; output messages' texts stay apart.


@needs_responses
def test_responses_reasoning_is_a_reasoning_part_and_each_text_its_own(capturing, client) -> None:
    reply = response(
        REASONING,
        said(output_text("Hello"), output_text("again.")),
        SUMMARY_ONLY,
        ENCRYPTED,
        said(output_text("World."), item_id="msg_2"),
        FUNCTION_CALL,
    )
    result = client.responses.create(model="gpt-5", input="Hi", extra_headers=raw_reply(reply))
    (message,) = captured(capturing)[names.OUTPUT_MESSAGES]  # one generation: one message
    assert message["parts"] == [
        reasoning_part("secret chain"),
        text("Hello"),
        text("again."),
        reasoning_part("In short"),
        text("World."),
        CALL_PART,
    ]
    assert message["finish_reason"] == result.status


@needs_responses
def test_streamed_responses_reasoning_is_a_reasoning_part(capturing, client) -> None:
    final = response(REASONING, said(output_text("Hello")), said(output_text("World."), item_id="msg_2"))
    started = {**final, "status": "in_progress", "output": [], "usage": None}
    events = [
        {"type": "response.created", "sequence_number": 0, "response": started},
        {"type": "response.output_item.done", "sequence_number": 1, "output_index": 0, "item": REASONING},
        {"type": "response.completed", "sequence_number": 2, "response": final},
    ]
    stream = client.responses.create(model="gpt-5", input="Hi", stream=True, extra_headers=raw_reply(events))
    assert len(list(stream)) == 3
    (message,) = captured(capturing)[names.OUTPUT_MESSAGES]
    assert message["parts"] == [reasoning_part("secret chain"), text("Hello"), text("World.")]


@needs_responses
def test_reasoning_sent_back_as_input_is_the_assistants_reasoning(capturing, client) -> None:
    """The SDK's own output items, sent back as the next input: reasoning stays the assistant's
    (encrypted reasoning is left out), never a user message."""
    reply = raw_reply(response(REASONING, ENCRYPTED, said(output_text("Hello")), FUNCTION_CALL))
    previous = client.responses.create(model="gpt-5", input="Hi", extra_headers=reply)
    capturing.exporter.clear()
    client.responses.create(model="gpt-5", input=[USER, *previous.output], extra_headers=reply)
    assert captured(capturing)[names.INPUT_MESSAGES] == [
        {"role": "user", "parts": [text("Hi")]},
        {"role": "assistant", "parts": [reasoning_part("secret chain")]},
        {"role": "assistant", "parts": [text("Hello")]},
        {"role": "assistant", "parts": [CALL_PART]},
    ]


# 6. The Responses API's other input items: custom tool calls are tool parts, the rest left out.


@needs_responses
def test_responses_custom_tool_calls_and_outputs_are_tool_parts(capturing, client) -> None:
    call = {
        "type": "custom_tool_call",
        "id": "ctc_1",
        "call_id": "call_c",
        "name": "sql",
        "input": "SELECT 1",
    }
    history = [USER, call, {"type": "custom_tool_call_output", "call_id": "call_c", "output": "1"}]
    reply = response({**call, "input": '{"not": "json args"}'})
    client.responses.create(model="gpt-5", input=history, extra_headers=raw_reply(reply))
    recorded = captured(capturing)
    assert recorded[names.INPUT_MESSAGES][1:] == [
        {"role": "assistant", "parts": [{**CUSTOM_PART, "arguments": "SELECT 1"}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "call_c", "response": "1"}]},
    ]
    assert recorded[names.OUTPUT_MESSAGES][0]["parts"] == [CUSTOM_PART]  # its input as written


@needs_responses
def test_other_responses_input_items_are_left_out(capturing, client) -> None:
    history = [
        {"type": "item_reference", "id": "msg_0"},
        USER,
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}},
        {"type": "file_search_call", "id": "fs_1", "status": "completed", "queries": ["q"]},
        ENCRYPTED,
        {"type": "image_generation_call", "id": "ig_1", "status": "completed", "result": IMAGE},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]},
    ]
    client.responses.create(model="gpt-5", input=history, extra_headers=raw_reply(response(said())))
    assert captured(capturing)[names.INPUT_MESSAGES] == [
        {"role": "user", "parts": [text("Hi")]},
        {"role": "assistant", "parts": [text("Hello")]},
    ]
    assert IMAGE not in capturing.span().attributes[names.INPUT_MESSAGES]


# 7. Refusals are recorded, as text (the conventions have no refusal part).


def test_chat_refusals_are_recorded_as_text(capturing, client) -> None:
    history = [
        USER,
        {"role": "assistant", "content": None, "refusal": "I can't."},
        USER,
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "Still no."}]},
        USER,
    ]
    reply = completion({"content": "Sure."}, {"content": None, "refusal": "I can't help."})
    client.chat.completions.create(model="gpt-4o", messages=history, n=2, extra_headers=raw_reply(reply))
    recorded = captured(capturing)
    assert [message["parts"] for message in recorded[names.INPUT_MESSAGES][1:4:2]] == [
        [text("I can't.")],
        [text("Still no.")],
    ]
    assert [message["parts"] for message in recorded[names.OUTPUT_MESSAGES]] == [
        [text("Sure.")],
        [text("I can't help.")],
    ]


def test_streamed_chat_refusals_are_recorded_as_text(capturing, client) -> None:
    chunks = [
        chunk(0, {"role": "assistant", "content": "", "refusal": None}),
        chunk(1, {"role": "assistant", "content": None, "refusal": ""}),
        chunk(0, {"content": "Sure."}),
        chunk(1, {"refusal": "I can't"}),
        chunk(1, {"refusal": " help."}, "stop"),
        chunk(0, {}, "stop"),
    ]
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[USER], n=2, stream=True, extra_headers=raw_reply(chunks)
    )
    assert len(list(stream)) == 6
    assert captured(capturing)[names.OUTPUT_MESSAGES] == [
        {"role": "assistant", "parts": [text("Sure.")], "finish_reason": "stop"},
        {"role": "assistant", "parts": [text("I can't help.")], "finish_reason": "stop"},
    ]


@needs_responses
def test_responses_refusals_are_recorded_as_text(capturing, client) -> None:
    refused = said({"type": "refusal", "refusal": "I can't help with that."})
    previous = client.responses.create(model="gpt-5", input="Hi", extra_headers=raw_reply(response(refused)))
    assert captured(capturing)[names.OUTPUT_MESSAGES][0]["parts"] == [text("I can't help with that.")]
    capturing.exporter.clear()
    reply = raw_reply(response(said(output_text("OK."))))
    client.responses.create(model="gpt-5", input=[USER, *previous.output, USER], extra_headers=reply)
    assert captured(capturing)[names.INPUT_MESSAGES][1] == {
        "role": "assistant",
        "parts": [text("I can't help with that.")],
    }


# 8. A chat custom tool call has its name, and its input as arguments.


def test_chat_custom_tool_calls_have_their_name_and_input(capturing, client) -> None:
    history = [USER, {"role": "assistant", "content": None, "tool_calls": [CUSTOM_CALL]}]
    reply = completion({"content": None, "tool_calls": [CUSTOM_CALL]}, finish_reason="tool_calls")
    client.chat.completions.create(model="gpt-4o", messages=history, extra_headers=raw_reply(reply))
    recorded = captured(capturing)
    assert recorded[names.INPUT_MESSAGES][1] == {"role": "assistant", "parts": [CUSTOM_PART]}
    assert recorded[names.OUTPUT_MESSAGES][0]["parts"] == [CUSTOM_PART]


def test_streamed_chat_custom_tool_calls_have_their_name_and_input(capturing, client) -> None:
    first = {"index": 0, "id": "call_c", "type": "custom", "custom": {"name": "sql", "input": '{"not": '}}
    chunks = [
        chunk(0, {"role": "assistant", "tool_calls": [first]}),
        chunk(0, {"tool_calls": [{"index": 0, "custom": {"input": '"json args"}'}}]}, "tool_calls"),
    ]
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[USER], stream=True, extra_headers=raw_reply(chunks)
    )
    assert len(list(stream)) == 2
    assert captured(capturing)[names.OUTPUT_MESSAGES][0]["parts"] == [CUSTOM_PART]


# 9. A tool output given as a list keeps its texts: images (and files) are left out.


@needs_responses
@pytest.mark.parametrize("kind", ["function_call_output", "custom_tool_call_output"])
def test_a_tool_output_list_keeps_its_text_not_its_images(capturing, client, kind: str) -> None:
    output = [
        {"type": "input_text", "text": "See "},
        {"type": "input_image", "image_url": IMAGE, "detail": "auto"},
        {"type": "input_file", "filename": "a.pdf", "file_data": IMAGE},
        {"type": "input_text", "text": "this."},
    ]
    history = [USER, {"type": kind, "call_id": "call_1", "output": output}]
    reply = raw_reply(response(said(output_text("OK."))))
    client.responses.create(model="gpt-5", input=history, instructions="Be brief.", extra_headers=reply)
    recorded = captured(capturing)
    assert recorded[names.INPUT_MESSAGES][1] == {
        "role": "tool",
        "parts": [{"type": "tool_call_response", "id": "call_1", "response": "See this."}],
    }
    assert recorded[names.SYSTEM_INSTRUCTIONS] == [text("Be brief.")]
    assert "data:" not in capturing.span().attributes[names.INPUT_MESSAGES]


def test_a_finish_reason_that_is_not_text_is_recorded_as_its_json(capturing, client) -> None:
    """The schema wants a string: a provider's malformed reason (a number) is recorded as its JSON text."""
    reply = completion({"content": "Sure."}, finish_reason=7)
    client.chat.completions.create(model="gpt-4o", messages=[USER], extra_headers=raw_reply(reply))
    assert captured(capturing)[names.OUTPUT_MESSAGES] == [
        {"role": "assistant", "parts": [text("Sure.")], "finish_reason": "7"}
    ]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_chat_reasoning_beside_the_text_is_a_reasoning_part(capturing, client, field: str) -> None:
    """DeepSeek, vLLM and Qwen send `reasoning_content`, OpenRouter and Groq `reasoning`: whole, streamed
    and sent back in the history."""
    history = [USER, {"role": "assistant", "content": "Hello.", field: "They greet."}, USER]
    reply = completion({"content": "Fine.", field: "Say fine."})
    client.chat.completions.create(model="gpt-4o", messages=history, extra_headers=raw_reply(reply))
    recorded = captured(capturing)
    assert recorded[names.INPUT_MESSAGES][1]["parts"] == [reasoning_part("They greet."), text("Hello.")]
    assert recorded[names.OUTPUT_MESSAGES][0]["parts"] == [reasoning_part("Say fine."), text("Fine.")]
    capturing.exporter.clear()
    chunks = [chunk(0, {field: "Say "}), chunk(0, {field: "fine."}), chunk(0, {"content": "Fine."}, "stop")]
    list(
        client.chat.completions.create(
            model="gpt-4o", messages=[USER], stream=True, extra_headers=raw_reply(chunks)
        )
    )
    assert captured(capturing)[names.OUTPUT_MESSAGES][0]["parts"] == [
        reasoning_part("Say fine."),
        text("Fine."),
    ]
