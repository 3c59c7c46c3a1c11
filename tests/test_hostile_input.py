"""Hostile input: the usage parser, the SSE observer and the prices-file loader never raise, and
nothing they keep grows with the input."""

from __future__ import annotations

import json
import time
import tracemalloc
from types import SimpleNamespace
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

from otel_tokencost import content, names
from otel_tokencost.bodies import MAX_KEPT, TAIL_WINDOW, JSONObserver
from otel_tokencost.engine import Call
from otel_tokencost.json_tail import (
    MAX_RUN,
    decode_object,
    element_members,
    top_level_members,
    trailing_members,
)
from otel_tokencost.operations import (
    CHAT_COMPLETIONS,
    EMBEDDINGS,
    MAX_FINISH_REASONS,
    RESPONSES,
    Outcome,
    parse_usage,
)
from otel_tokencost.pricing import Pricer, PricesFileError, Usage, load
from otel_tokencost.providers import endpoint_for
from otel_tokencost.request_attributes import REQUEST_KEYS, add_request_attributes
from otel_tokencost.sse import MAX_LINE, SSEObserver
from otel_tokencost.telemetry import Telemetry

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=30), children, max_size=6)
    ),
    max_leaves=20,
)
usage_keys = st.sampled_from(
    [
        "prompt_tokens",
        "completion_tokens",
        "input_tokens",
        "output_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
        "cached_tokens",
        "reasoning_tokens",
        "prompt_cache_hit_tokens",
    ]
)
usage_like = st.dictionaries(usage_keys, json_values | st.integers(-(10**40), 10**40), max_size=8)


request_keys = st.sampled_from([*sorted(REQUEST_KEYS), "messages", "tools"])
request_values = json_values | st.dictionaries(st.sampled_from(["type", "format", "id"]), json_values)
request_like = st.dictionaries(request_keys, request_values, max_size=8)
ATTRIBUTE_TYPES = {
    names.REQUEST_MAX_TOKENS: (int,),
    names.REQUEST_TEMPERATURE: (float,),  # doubles in the semantic conventions
    names.REQUEST_TOP_P: (float,),
    names.REQUEST_TOP_K: (float,),
    names.REQUEST_SEED: (int,),
    names.REQUEST_FREQUENCY_PENALTY: (float,),
    names.REQUEST_PRESENCE_PENALTY: (float,),
    names.REQUEST_STOP_SEQUENCES: (tuple,),
    names.REQUEST_ENCODING_FORMATS: (tuple,),
    names.EMBEDDINGS_DIMENSION_COUNT: (int,),
    names.REQUEST_CHOICE_COUNT: (int,),
    names.REQUEST_STREAM: (bool,),
    names.OUTPUT_TYPE: (str,),
    names.CONVERSATION_ID: (str,),
    names.OPENAI_REQUEST_SERVICE_TIER: (str,),
}


@given(request_like, st.booleans())
@example({"service_tier": ""}, True)
@example({"service_tier": "auto", "n": 1, "stream": False}, True)
@example({"max_tokens": 500.0, "max_output_tokens": 0.5}, False)
def test_request_attributes_of_any_body_are_of_their_types(body, is_openai) -> None:
    """Whatever a request body holds, its attributes have the types the conventions give them (a bool is
    no seed), a single choice is no count, and `auto` is no tier asked for."""
    attributes: dict = {}
    add_request_attributes(body, attributes, is_openai)
    for name, value in attributes.items():
        assert value.__class__ in ATTRIBUTE_TYPES[name], (name, value)
        if value.__class__ is tuple:  # a string array, never empty
            assert value and all(item.__class__ is str for item in value), (name, value)
    assert attributes.get(names.REQUEST_CHOICE_COUNT) != 1
    assert attributes.get(names.REQUEST_STREAM, True) is True
    assert attributes.get(names.OUTPUT_TYPE) in (None, "json", "text", "speech")
    assert attributes.get(names.OPENAI_REQUEST_SERVICE_TIER) not in ("auto", "")
    assert is_openai or names.OPENAI_REQUEST_SERVICE_TIER not in attributes


@given(usage_like | json_values)
def test_usage_parser_never_raises_and_keeps_subsets_inside_totals(raw) -> None:
    usage = parse_usage(raw)
    if usage is not None:
        assert isinstance(usage, Usage)
        input_parts = (usage.cache_read_tokens, usage.cache_write_tokens, usage.input_audio_tokens)
        assert min(input_parts) >= 0 and sum(input_parts) <= usage.input_tokens <= 10**12
        assert 0 <= usage.reasoning_tokens <= usage.output_tokens <= 10**12
        assert 0 <= usage.output_audio_tokens <= usage.output_tokens


details = st.dictionaries(
    st.sampled_from(["cached_tokens", "cache_write_tokens", "audio_tokens", "reasoning_tokens"]),
    st.integers(-5, 3000) | st.sampled_from([None, "7", 2.0, 2.5, True]),
)


@given(st.integers(0, 2000), st.integers(0, 2000), details, details)
def test_subsets_of_a_well_formed_usage_stay_inside_their_totals(prompt, completion, inputs, outputs) -> None:
    raw = {"prompt_tokens": prompt, "completion_tokens": completion}
    usage = parse_usage({**raw, "prompt_tokens_details": inputs, "completion_tokens_details": outputs})
    input_parts = (usage.cache_read_tokens, usage.cache_write_tokens, usage.input_audio_tokens)
    assert min(input_parts) >= 0 and sum(input_parts) <= usage.input_tokens == prompt
    assert 0 <= usage.reasoning_tokens <= usage.output_tokens and usage.output_tokens >= completion
    assert 0 <= usage.output_audio_tokens <= usage.output_tokens


@given(st.lists(json_values, max_size=30))
def test_chunk_readers_never_raise(chunks) -> None:
    for operation in (CHAT_COMPLETIONS, RESPONSES):
        outcome = Outcome()
        for chunk in chunks:
            if isinstance(chunk, dict):
                operation.read_chunk(outcome, chunk)
        assert len(outcome.finish_reasons) <= MAX_FINISH_REASONS


content_names = st.sampled_from(
    [
        "messages",
        "input",
        "prompt",
        "instructions",
        "choices",
        "message",
        "delta",
        "content",
        "text",
        "role",
        "tool_calls",
        "function",
        "name",
        "arguments",
        "index",
        "finish_reason",
        "output",
        "type",
        "call_id",
        "tool_call_id",
        "function_call",
        "function_call_output",
        "response",
    ]
)
content_like = st.recursive(
    json_values | content_names,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(content_names, children, max_size=6),
    max_leaves=25,
)


@given(st.dictionaries(content_names, content_like, max_size=6), st.lists(content_like, max_size=8))
def test_captured_content_of_any_request_response_or_chunks_never_raises(body, replies) -> None:
    """Message content (when captured) is read from whatever the app sends and the provider answers."""
    assert all(json.loads(value) is not None for value in content.input_attributes(body).values())
    for whole in (True, False):
        outcome = Outcome(finished={0: "stop"})
        for reply in replies:
            (content.read_output if whole else content.read_chunk_output)(outcome, reply)
        for value in content.output_attributes(outcome).values():
            assert json.loads(value) is not None


@pytest.mark.parametrize("depth", [65, 500, 900])
def test_captured_content_nested_deeply_is_recorded_as_json_text(depth) -> None:
    """Tool arguments, results, names and roles nested deeper than a walk may recurse (up to what
    json.loads decodes) are recorded as their JSON text, so that cutting the messages to size never
    recurses past Python's limit."""
    deep_text = "[" * depth + json.dumps("x" * 20_000) + "]" * depth
    deep = json.loads(deep_text)
    call = {"id": "c", "type": "function", "function": {"name": deep, "arguments": deep_text}}
    body = {
        "messages": [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": deep, "content": "hi"},
        ]
    }
    responses_body = {
        "input": [
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": deep},
            {"type": "function_call_output", "call_id": deep, "output": deep},
        ]
    }
    for request in (body, responses_body):
        recorded = content.input_attributes(request)[names.INPUT_MESSAGES]
        assert len(recorded) <= content.MAX_CHARS
        kept = json.loads(recorded)
        assert kept and all(part["type"].startswith("tool_call") for part in kept[0]["parts"])
        arguments = kept[0]["parts"][0]["arguments"]  # its JSON text, cut to size
        assert arguments.endswith(content.TRUNCATED)
        assert deep_text.startswith(arguments.removesuffix(content.TRUNCATED))


texts = st.text(st.characters(codec="utf-8"), max_size=400) | st.text('a"\\\n\t', max_size=400)
message_like = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "tool"]),
        "parts": st.lists(
            st.fixed_dictionaries({"type": st.just("text"), "content": texts})
            | st.fixed_dictionaries(
                {"type": st.just("tool_call"), "name": texts, "arguments": st.dictionaries(texts, texts)}
            ),
            max_size=4,
        ),
    }
)


def _kept_as_sent_or_cut(sent: Any, recorded: Any) -> bool:
    """Whether `recorded` is `sent` with some strings cut short and marked."""
    if isinstance(sent, str):
        cut = recorded.endswith(content.TRUNCATED) and sent.startswith(recorded[: -len(content.TRUNCATED)])
        return recorded == sent or cut
    if isinstance(sent, dict):
        return list(sent) == list(recorded) and all(
            _kept_as_sent_or_cut(sent[key], recorded[key]) for key in sent
        )
    return len(sent) == len(recorded) and all(map(_kept_as_sent_or_cut, sent, recorded))


@given(st.lists(message_like, max_size=30), st.integers(100, 3000))
def test_captured_messages_too_long_are_cut_as_valid_json_keeping_the_newest(messages, limit) -> None:
    """Over the cap, captured messages stay valid JSON in their shape: strings are cut short (and marked)
    and, where that is not enough, the oldest messages are left out; what is kept is in order."""
    with patch.object(content, "MAX_CHARS", limit):
        recorded = content._capped(messages)
    assert len(recorded) <= limit
    kept = json.loads(recorded)
    if len(json.dumps(messages, ensure_ascii=False)) <= limit:
        assert kept == messages
    assert _kept_as_sent_or_cut(messages[len(messages) - len(kept) :], kept)


def _as_object(value: Any) -> Any:
    if isinstance(value, dict):
        return SimpleNamespace(**{key: _as_object(item) for key, item in value.items()})
    return [_as_object(item) for item in value] if isinstance(value, list) else value


def test_a_chunk_reads_the_same_as_a_dict_an_sdk_model_or_any_object() -> None:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    finishing = {"index": 0, "delta": {}, "finish_reason": "stop"}
    chunks = [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}], "usage": None},
        {**base, "choices": [finishing], "x_groq": {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}},
        {**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}},
    ]
    shapes = {
        "dict": chunks,
        "sdk model": [ChatCompletionChunk.model_validate(chunk) for chunk in chunks],
        "object": [_as_object(chunk) for chunk in chunks],  # the first lacks `usage`, the rest `object`
    }
    for shape, shaped in shapes.items():
        outcome = Outcome()
        # True: the usage-only chunk; None: no usage (the third's is in x_groq)
        read_as = [CHAT_COMPLETIONS.read_chunk(outcome, chunk) for chunk in shaped]
        assert read_as == [None, None, False, True], shape
        assert (outcome.response_model, outcome.response_id) == ("m", "chatcmpl-1"), shape
        assert outcome.finish_reasons == ["stop"], shape
        assert outcome.usage == Usage(5, 7), shape


def test_every_choice_of_a_chunk_is_read_whether_one_or_several() -> None:
    """A chunk of one SDK choice is read on its own short path, several choices (`n=2`) on the general."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    two = [
        {"index": 0, "delta": {}, "finish_reason": "stop"},
        {"index": 1, "delta": {}, "finish_reason": "length"},
    ]
    chunks = [
        {**base, "choices": [{"index": 1, "delta": {"content": "hi"}, "finish_reason": None}]},
        {**base, "choices": two},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]},
    ]
    for shaped in (chunks, [ChatCompletionChunk.model_validate(chunk) for chunk in chunks]):
        outcome = Outcome()
        assert [CHAT_COMPLETIONS.read_chunk(outcome, chunk) for chunk in shaped] == [None] * 3  # no usage
        assert outcome.finish_reasons == ["stop", "length"]  # once per choice (the first), in their order
        assert outcome.response_model == "m"


class FakeTelemetry(Telemetry):
    """A real engine on the API's no-op providers: nothing exported, everything computed."""

    def __init__(self) -> None:
        from opentelemetry.metrics import NoOpMeter
        from opentelemetry.trace import NoOpTracer

        super().__init__(NoOpTracer(), NoOpMeter("test"), Pricer())


def new_call() -> Call:
    return Call(FakeTelemetry(), endpoint_for("http://127.0.0.1:1/v1"), CHAT_COMPLETIONS, {"model": "m"})


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(st.lists(st.binary(max_size=300), max_size=40))
def test_sse_observer_takes_any_bytes(pieces) -> None:
    call = new_call()
    observer = SSEObserver(call)
    for piece in pieces:
        observer.feed(piece)
        assert observer._tail_size <= MAX_LINE
    observer.finish()
    call.end()


@given(
    st.lists(
        st.sampled_from([b"data: ", b"{", b'"usage":', b"}", b"\n", b"\r\n", b"[DONE]", b": ping", b"x"]),
        max_size=60,
    )
)
def test_sse_observer_takes_any_sse_like_text(tokens) -> None:
    call = new_call()
    observer = SSEObserver(call)
    observer.feed(b"".join(tokens))
    observer.finish()


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"  \r\n"], ids=["LF", "CRLF", "padded CRLF"])
def test_sse_events_read_alike_whatever_their_lines_end_with(line_end) -> None:
    """The first event, a finishing one and the last are read; `[DONE]` and empty payloads are none."""
    chunk = {"id": "c1", "model": "m-1", "object": "chat.completion.chunk", "created": 1}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]},
        {**chunk, "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]},
        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]},
        {**chunk, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}},
    ]
    lines = [b"data: " + json.dumps(event).encode() for event in events] + [b"data:", b"data: [DONE]"]
    call = new_call()
    observer = SSEObserver(call)
    observer.feed(b"".join(line + line_end + line_end for line in lines))
    observer.finish()
    outcome = call.outcome
    assert (outcome.response_model, outcome.response_id, outcome.finish_reasons) == ("m-1", "c1", ["length"])
    assert outcome.usage == Usage(input_tokens=7, output_tokens=3)


@pytest.mark.parametrize("separator", [b":", b": ", b" : ", b":\t"], ids=repr)
def test_a_choice_finishing_mid_stream_is_read_however_its_colon_is_spaced(separator, monkeypatch) -> None:
    """With two choices, the first finishes long before the last two events: its event is read, the
    events whose reasons are null (or quoted inside content) are not."""

    def event(choices: str) -> bytes:
        return b'data: {"id":"c1","model":"m-1","choices":[' + choices.encode() + b"]}\n\n"

    def choice(index: int, finish: str, content: str = "w") -> str:
        return f'{{"index":{index},"delta":{{"content":{json.dumps(content)}}},"finish_reason"#{finish}}}'

    body = b"".join(
        [
            event(choice(0, "null") + "," + choice(1, "null")),
            event(choice(0, '"length"') + "," + choice(1, "null")),
            *[event(choice(1, "null", 'say "finish_reason":"x"')) for _ in range(5)],
            event(choice(1, '"stop"')),
            b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":9}}\n\n',
            b"data: {}\n\ndata: [DONE]\n\n",
        ]
    ).replace(b'"finish_reason"#', b'"finish_reason"' + separator)
    read_line, read = SSEObserver._read, []

    def counted_read(self: SSEObserver, line: bytes) -> None:
        read.append(line)
        read_line(self, line)

    monkeypatch.setattr(SSEObserver, "_read", counted_read)
    call = new_call()
    observer = SSEObserver(call)
    observer.feed(body)
    observer.finish()
    assert len(read) == 5  # the first event, the two finishing ones, the last two
    assert call.outcome.finish_reasons == ["length", "stop"]
    assert call.outcome.usage == Usage(input_tokens=7, output_tokens=9)


def _loads_object(body: bytes) -> dict | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


JSON_ENCODINGS = [
    "utf-8",
    "utf-8-sig",
    "utf-16",
    "utf-16-le",
    "utf-16-be",
    "utf-32",
    "utf-32-le",
    "utf-32-be",
]


@given(
    st.dictionaries(st.text(max_size=8), json_values, max_size=4) | json_values,
    st.sampled_from(JSON_ENCODINGS),
)
def test_a_body_decodes_as_json_loads_decodes_it_in_any_encoding(document, encoding) -> None:
    """UTF-8 is read directly; a BOM, UTF-16 or UTF-32 still decode, as json.loads detects them."""
    body = json.dumps(document, ensure_ascii=False).encode(encoding, "surrogatepass")
    expected = _loads_object(body)
    assert expected is not None or not isinstance(document, dict)
    assert repr(decode_object(body)) == repr(expected)  # repr: NaN equals itself


@given(
    st.binary(max_size=64)
    | st.lists(st.sampled_from([b'{"a"', b":", b"1", b"}", b"\xef\xbb\xbf", b"\x00", b"\xed\xa0\x80"])).map(
        b"".join
    )
)
def test_any_bytes_decode_as_json_loads_decodes_them(body) -> None:
    assert repr(decode_object(body)) == repr(_loads_object(body))


TAIL_KEYS = ("model", "usage")
tail_names = st.sampled_from(["model", "usage", "data", "id", "object", 'say "model', ""])
tail_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8) | tail_names,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(tail_names, children, max_size=4),
    max_leaves=16,
)
json_layouts = st.sampled_from(
    [{}, {"indent": 2}, {"separators": (",", ":")}, {"ensure_ascii": False}, {"separators": (" , ", " : ")}]
)


@given(st.dictionaries(tail_names, tail_values, max_size=6), json_layouts, st.integers(min_value=0))
def test_the_tail_reader_agrees_with_a_full_decode(document, layout, cut) -> None:
    """Whatever the members' order, nesting and decoys, the trailing members read are those of the whole
    object, or none are read (and the caller decodes it all). From a fragment of the object's end, a
    member read is the object's own."""
    body = json.dumps(document, **layout).encode()
    members = trailing_members(body, TAIL_KEYS)
    if members is not None:
        for key in TAIL_KEYS:
            assert members.get(key, "absent") == document.get(key, "absent")
    members = trailing_members(body[cut % (len(body) + 1) :], TAIL_KEYS, fragment=True)
    for key in members or ():
        assert members[key] == document[key]


def test_the_tail_reader_reads_the_usual_layout_and_refuses_what_is_not_the_top_level() -> None:
    tail = {"model": "m", "usage": {"prompt_tokens": 3}}
    assert trailing_members(json.dumps({"data": [[0.5] * 9], **tail}, indent=2).encode(), TAIL_KEYS) == tail
    nested = {"data": [{"model": "x", "usage": {"prompt_tokens": 1}}]}
    assert trailing_members(json.dumps(nested).encode(), TAIL_KEYS) is None
    earlier = {"usage": {"prompt_tokens": 3}, "model": "m", "extra": {"usage": {"prompt_tokens": 1}}}
    assert trailing_members(json.dumps(earlier).encode(), TAIL_KEYS) is None
    for text in (b'["model", "usage"]', b'{"model":"m","usage":{}', b'{"model":"m"} x', b"\xff" * 9):
        assert trailing_members(text, TAIL_KEYS) is None


@given(
    st.binary(max_size=200)
    | st.lists(st.sampled_from([b'"model"', b'"usage"', b":", b",", b"{", b"}"])).map(b"".join)
)
def test_the_tail_reader_takes_any_bytes(body) -> None:
    members = trailing_members(body, TAIL_KEYS)
    assert members is None or isinstance(members, dict)


WALK_KEYS = frozenset({"model", "stream", "max_tokens"})
walk_names = st.sampled_from(["model", "stream", "max_tokens", "messages", 'say "model', "\\", ""])
walk_strings = st.text(alphabet='ab"\\[]{},: \n\u00e9\U0001f600', max_size=12)
walk_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | walk_strings | walk_names,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(walk_names, children, max_size=4),
    max_leaves=16,
)


@given(st.dictionaries(walk_names, walk_values, max_size=6), json_layouts)
def test_the_member_walk_agrees_with_a_full_decode(document, layout) -> None:
    """Whatever the strings hold (quotes, backslashes, brackets), the members read are the object's own."""
    body = json.dumps(document, **layout).encode()
    expected = {key: value for key, value in document.items() if key in WALK_KEYS}
    assert top_level_members(body, WALK_KEYS, max_steps=10_000) == expected
    undecoded = top_level_members(body, {"messages"}, max_steps=10_000, raw={"messages"})
    assert {key: json.loads(value) for key, value in undecoded.items()} == {
        key: value for key, value in document.items() if key == "messages"
    }


@given(st.lists(st.dictionaries(walk_names, walk_values, max_size=6), max_size=4), json_layouts)
def test_the_element_walk_agrees_with_a_full_decode(elements, layout) -> None:
    body = json.dumps(elements, **layout).encode()
    expected = [{key: value for key, value in element.items() if key in WALK_KEYS} for element in elements]
    assert element_members(body, WALK_KEYS, max_steps=10_000) == expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "m"}',
        b'[{"model": "m"}, 1]',
        b'[{"model": "m"} {"a": 1}]',
        b'[{"model": "m"},]',
        b"[",
        b"",
    ],
)
def test_the_element_walk_refuses_what_is_not_an_array_of_objects(body) -> None:
    assert element_members(body, WALK_KEYS, max_steps=100) is None


choices_documents = st.fixed_dictionaries(
    {
        "id": walk_strings,
        "model": walk_strings,
        "choices": st.lists(
            st.fixed_dictionaries(
                {"index": st.integers(0, 3), "message": walk_values},
                optional={"finish_reason": st.none() | walk_strings, "logprobs": walk_values},
            ),
            max_size=3,
        ),
    },
    optional={
        "usage": st.fixed_dictionaries({"prompt_tokens": st.integers(0, 99)}),
        "service_tier": walk_strings,
        "x": walk_values,
    },
)


@given(choices_documents, json_layouts)
def test_a_large_choices_body_walked_reads_as_decoded(document, layout) -> None:
    """A Chat Completions body walked (as a large one is) says what it says decoded: model, id, service
    tier, every choice's finish reason and the usage. (4 MB of audio give the walk steps enough for any
    body here.)"""
    body = json.dumps({"audio": "x" * 4_000_000, **document}, **layout).encode()
    walked, decoded = Outcome(), Outcome()
    CHAT_COMPLETIONS.read(walked, CHAT_COMPLETIONS.walk_body(body))
    CHAT_COMPLETIONS.read(decoded, json.loads(body))
    assert walked == decoded


counts = st.integers(0, 99)
responses_documents = st.fixed_dictionaries(
    {"id": walk_strings, "model": walk_strings, "status": walk_strings, "output": walk_values},
    optional={
        "usage": st.fixed_dictionaries({"input_tokens": counts, "output_tokens": counts}),
        "service_tier": walk_strings,
    },
)


@given(responses_documents, json_layouts)
def test_a_large_responses_body_walked_reads_as_decoded(document, layout) -> None:
    """A Responses body walked (as a large one is) says what it says decoded: model, id, service tier,
    status and usage."""
    body = json.dumps({"output_image": "x" * 4_000_000, **document}, **layout).encode()
    walked, decoded = Outcome(), Outcome()
    RESPONSES.read(walked, RESPONSES.walk_body(body))
    RESPONSES.read(decoded, json.loads(body))
    assert walked == decoded


def test_the_member_walk_keeps_the_last_of_a_duplicated_member_as_a_full_decode_does() -> None:
    tricky = [{"c": ']\\"[{'}, "\\", '"model": "x"']  # escaped quotes, a trailing backslash, decoys
    body = b' {"model": "a", "messages": %s, "model" : "b", "max_tokens": 7}\n' % json.dumps(tricky).encode()
    assert {key: json.loads(body)[key] for key in ("model", "max_tokens")} == {"model": "b", "max_tokens": 7}
    assert top_level_members(body, WALK_KEYS, max_steps=100) == {"model": "b", "max_tokens": 7}


def test_the_member_walk_stops_at_its_step_budget() -> None:
    """A body of many short strings is left to a full decode. A step finds a top-level key's or
    value's end, or the next quote or bracket inside a value and, for a quote, its string's end."""
    body = json.dumps({"messages": ["x"] * 20, "model": "m"}).encode()
    steps = 1 + 20 * 2 + 1 + 2  # "messages", each "x", the closing bracket, "model" and "m"
    assert top_level_members(body, WALK_KEYS, max_steps=steps) == {"model": "m"}
    assert top_level_members(body, WALK_KEYS, max_steps=steps - 1) is None


@pytest.mark.parametrize(
    "body",
    [
        b'["model", "m"]',
        b'{"model": "m"',
        b'{"model": "m"} x',
        b'{"model" "m"}',
        b'{"model": "m" "stream": true}',
        b'{"messages": [{"a": 1}, "model": "m"}',
        b'{"messages": "unterminated, "model": "m"}',
        b'{"model": tru}',
        b'{model: "m"}',
        b"\xff" * 9,
        b"",
    ],
)
def test_the_member_walk_refuses_what_is_not_an_object(body) -> None:
    assert top_level_members(body, WALK_KEYS, max_steps=100) is None


def test_a_wanted_member_nested_deeper_than_python_decodes_is_refused() -> None:
    deep = b'{"model": "m", "stream": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert top_level_members(deep, WALK_KEYS, max_steps=1_000_000) is None
    skipped = b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b', "model": "m"}'
    assert top_level_members(skipped, WALK_KEYS, max_steps=1_000_000) == {"model": "m"}


def test_a_long_run_of_backslashes_or_spaces_is_not_looked_back_over() -> None:
    """Telling an escaped quote from a closing one, or a member's start, looks back over a run of
    backslashes or whitespace; a run longer than MAX_RUN is not followed (the body is then decoded
    whole), so that a hostile one costs no more than a short one."""
    for backslashes, expected in ((MAX_RUN // 2 - 1, {"model": "m"}), (MAX_RUN, None)):
        body = json.dumps({"messages": "\\" * backslashes, "model": "m"}).encode()
        assert top_level_members(body, WALK_KEYS, max_steps=100) == expected
    for spaces, expected in ((MAX_RUN - 1, {"model": "m", "usage": {}}), (MAX_RUN, None)):
        body = b'{"data": [1],' + b" " * spaces + b'"model": "m", "usage": {}}'
        assert trailing_members(body, TAIL_KEYS) == expected


@given(
    st.binary(max_size=200)
    | st.lists(st.sampled_from([b'"model"', b'"m\\"', b":", b",", b"{", b"}", b"[", b"]", b"1"])).map(
        b"".join
    )
)
def test_the_member_walk_takes_any_bytes(body) -> None:
    members = top_level_members(body, WALK_KEYS, max_steps=1_000)
    assert members is None or isinstance(members, dict)


@pytest.mark.parametrize("where", ["first event", "last events"])
def test_an_event_nested_deeper_than_python_decodes_is_skipped(where) -> None:
    call = new_call()
    observer = SSEObserver(call)
    deep = b"data: " + b"[" * 100_000 + b"]" * 100_000 + b"\n\n"
    usage = b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n'
    first = b'data: {"model":"m","choices":[{"index":0,"delta":{"content":"w"}}]}\n\n'
    if where == "first event":
        observer.feed(deep + usage)
    else:
        observer.feed(first + usage + deep)
    observer.finish()
    assert call.outcome.usage == Usage(input_tokens=3, output_tokens=2)


def test_a_long_event_read_in_small_pieces_costs_linear_time() -> None:
    """A Responses `response.completed` event of 900 KB read 512 bytes at a time (as `iter_lines` does) is
    read whole, and costs about ten times what a tenth of it does: its pieces are not copied each time."""

    def seconds(size: int) -> float:
        event = b'data: {"type":"response.completed","response":{"model":"m","status":"completed","x":"'
        body = event + b"x" * size + b'"}}\n\n'
        best = float("inf")
        for _ in range(3):
            call = Call(FakeTelemetry(), endpoint_for("http://127.0.0.1:1/v1"), RESPONSES, {"model": "m"})
            observer = SSEObserver(call)
            started = time.perf_counter()
            for start in range(0, len(body), 512):
                observer.feed(body[start : start + 512])
            observer.finish()
            best = min(best, time.perf_counter() - started)
            assert call.outcome.finish_reasons == ["completed"]
        return best

    assert seconds(900_000) < 40 * seconds(90_000)


def test_a_100_mb_body_is_not_kept() -> None:
    """Streamed through the observer in 64 KB pieces, one endless line and a million events keep nothing."""
    call = new_call()
    observer = SSEObserver(call)
    tracemalloc.start()
    line = b"x" * 65536
    for _ in range(800):  # ~52 MB of a single line that never ends
        observer.feed(line)
    event = b'data: {"choices":[{"index":0,"delta":{"content":"w"},"finish_reason":null}]}\n\n'
    block = event * 1000
    for _ in range(1000):  # a million events, ~80 MB
        observer.feed(block)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 3 * MAX_LINE  # the kept line, and its copy when it is joined
    usage = (
        b'data: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1000000}}\n\ndata: [DONE]\n\n'
    )
    observer.feed(usage)
    observer.finish()
    assert call.outcome.usage == Usage(input_tokens=3, output_tokens=1_000_000)


def test_a_large_json_body_read_through_a_stream_keeps_only_its_tail() -> None:
    """Past MAX_KEPT bytes, a JSON body seen piece by piece keeps only its last TAIL_WINDOW bytes, and an
    embeddings body's usage is still read from them."""
    call = Call(FakeTelemetry(), endpoint_for("http://127.0.0.1:1/v1"), EMBEDDINGS, {"model": "m"})
    observer = JSONObserver(call)
    item = b"[0.015625,-0.5],"
    tracemalloc.start()
    observer.feed(b'{"object":"list","data":[')
    for _ in range(MAX_KEPT // (len(item) * 4096) * 3):
        observer.feed(item * 4096)  # 64 KB, a new object each time, as a socket read gives
    observer.feed(b'[1.0]],"model":"m","usage":{"prompt_tokens":7,"total_tokens":7}}')
    # The pieces still alive that this test allocated: other threads' allocations are not the observer's.
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, __file__)])
    tracemalloc.stop()
    assert sum(stat.size for stat in snapshot.statistics("filename")) < 4 * TAIL_WINDOW
    observer.finish()
    assert call.outcome.usage == Usage(input_tokens=7)


@pytest.mark.parametrize("status", [["completed"], {"state": "completed"}, 7])
def test_a_responses_status_that_is_not_text_leaves_the_rest_read(status) -> None:
    outcome = Outcome()
    RESPONSES.read(
        outcome, {"model": "m", "status": status, "usage": {"input_tokens": 3, "output_tokens": 2}}
    )
    assert (outcome.response_model, outcome.finish_reasons) == ("m", [])
    assert (outcome.usage.input_tokens, outcome.usage.output_tokens) == (3, 2)


def test_a_finish_reason_repeated_by_a_choice_without_index_counts_once() -> None:
    outcome = Outcome()
    for chunk in (
        {"model": "m", "choices": [{"finish_reason": "stop"}]},
        {"model": "m", "choices": [{"finish_reason": "stop"}], "usage": {"prompt_tokens": 1}},
        {"model": "m", "choices": [{"finish_reason": "length"}, {"finish_reason": "stop"}]},
    ):
        CHAT_COMPLETIONS.read_chunk(outcome, chunk)
    assert outcome.finish_reasons == ["stop", "stop"]  # choice 0's first reason, then choice 1's


def test_a_million_finishing_chunks_keep_a_bounded_list() -> None:
    outcome = Outcome()
    for index in range(1_000_000):  # a choice each
        CHAT_COMPLETIONS.read_chunk(
            outcome, {"model": "m", "choices": [{"index": index, "finish_reason": "stop"}]}
        )
    assert len(outcome.finish_reasons) == MAX_FINISH_REASONS


prices_shaped = st.fixed_dictionaries(
    {
        "providers": st.lists(
            st.dictionaries(
                st.sampled_from(["match", "currency", "usd_per_unit", "models", "prices_from", "extra"]),
                json_values
                | st.dictionaries(
                    st.text(max_size=10),
                    st.dictionaries(
                        st.sampled_from(["input_mtok", "output_mtok", "cache_read_mtok", "tiers", "base"]),
                        json_values,
                    ),
                ),
                max_size=6,
            ),
            max_size=4,
        )
    }
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(prices_shaped | json_values)
def test_prices_file_loader_only_raises_its_own_error(tmp_path_factory, data) -> None:
    path = tmp_path_factory.mktemp("prices") / "prices.json"
    path.write_text(json.dumps(data, default=str))
    try:
        providers = load(path)
    except PricesFileError as error:
        assert error.problems and all(isinstance(problem, str) for problem in error.problems)
        return
    pricer = Pricer(providers)
    for provider in providers:
        for model in provider.models:
            pricer.price(provider.match, model, None, Usage(1000, 100, 10), 0)


@given(st.text(max_size=200))
def test_prices_file_loader_takes_any_toml_text(tmp_path_factory, text) -> None:
    path = tmp_path_factory.mktemp("prices") / "prices.toml"
    path.write_text(text)
    try:
        providers = load(path)
    except PricesFileError as error:
        assert error.problems and str(path) in str(error)
        return
    assert providers and all(provider.match for provider in providers)


def test_metric_attribute_sets_stay_bounded_with_endless_model_names() -> None:
    from otel_tokencost.engine import MAX_ATTRIBUTE_SETS

    telemetry = FakeTelemetry()
    endpoint = endpoint_for("http://127.0.0.1:1/v1")
    for index in range(MAX_ATTRIBUTE_SETS + 500):
        call = Call(telemetry, endpoint, CHAT_COMPLETIONS, {"model": f"model-{index}"})
        call.end()
    assert 0 < len(telemetry.metric_attribute_sets) <= MAX_ATTRIBUTE_SETS


def test_pricing_caches_stay_bounded_with_endless_base_urls() -> None:
    """A gateway with a path per tenant gives a base URL per tenant: the caches start over, never grow."""
    from otel_tokencost.pricing.pricer import MAX_CACHED

    pricer = Pricer()
    usage = Usage(input_tokens=10, output_tokens=5)
    costs = {
        pricer.price(f"http://gw.internal/t/{index}/v1", "gpt-4o-mini", None, usage, 0).usd
        for index in range(MAX_CACHED + 300)
    }
    assert len(costs) == 1  # every tenant's call priced alike
    assert 0 < len(pricer._url_providers) <= MAX_CACHED and 0 < len(pricer._quotes) <= MAX_CACHED


def test_the_requests_endpoint_cache_stays_bounded_with_endless_urls() -> None:
    from otel_tokencost.instrumentation.requests import MAX_TARGETS, _Patch
    from otel_tokencost.operations import EMBEDDINGS

    patch = _Patch(FakeTelemetry(), ())
    for index in range(MAX_TARGETS + 300):
        operation, endpoint = patch._target(f"http://gw.internal/t/{index}/v1/embeddings")
        assert (operation, endpoint.base_url) == (EMBEDDINGS, f"http://gw.internal/t/{index}/v1")
    assert 0 < len(patch._targets) <= MAX_TARGETS
