"""OpenAI-compatible endpoints: which operation a URL path is, and how to read its responses.

Readers work on the openai SDK's models and on decoded JSON alike, so every transport shares them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any

from . import names
from .json_tail import BYTES_PER_STEP, element_members, top_level_members
from .money import MONEY
from .pricing import Usage

_EMPTY: dict[str, Any] = {}


def fields(obj: Any) -> Mapping[str, Any]:
    """All fields of a decoded JSON object or an SDK model, declared and extra, as one mapping.

    SDK models are pydantic: fields live in `__dict__` and undeclared ones (a provider's own usage
    fields) in `__pydantic_extra__`. Reading those directly avoids `getattr`'s slow failure path.
    Their class defines `__getattr__`, so Python looks up each of their attributes the slow way,
    `__class__` too: the readers ask `type()` whether an object is a dict.
    """
    if type(obj) is dict:
        return obj
    try:  # attribute access, not getattr(): this runs for every stream chunk
        declared = obj.__dict__
        extra = obj.__pydantic_extra__
    except AttributeError:
        return getattr(obj, "__dict__", _EMPTY)
    return {**declared, **extra} if extra else declared


def get(obj: Any, name: str) -> Any:
    """A field of a decoded JSON object or of an SDK model (declared or extra); None when absent.

    SDK models are pydantic: fields live in `__dict__` and undeclared ones in `__pydantic_extra__`.
    Reading those directly avoids `getattr`'s slow failure path for a field the model lacks.
    """
    if type(obj) is dict:
        return obj.get(name)
    try:
        fields = obj.__dict__
    except AttributeError:
        return getattr(obj, name, None)
    value = fields.get(name)
    if value is None and name not in fields:
        extra = getattr(obj, "__pydantic_extra__", None)
        if extra:
            return extra.get(name)
    return value


XAI_TICKS_PER_USD = Decimal(10**10)
MAX_TOKENS = 10**12  # more than any call uses; a larger count is garbage (and would not fit an int64)


def count(value: Any) -> int | None:
    """A token count as the provider stated it, or None when it is not a usable count."""
    if value.__class__ is int:
        return value if 0 <= value <= MAX_TOKENS else None
    if value.__class__ is float and 0 <= value <= MAX_TOKENS and value.is_integer():
        return int(value)
    return None


def parse_usage(usage: Any) -> Usage | None:
    """Usage in Chat Completions or Responses shape, in any provider's dialect.

    Cached input is read from `*_tokens_details.cached_tokens`, DeepSeek's `prompt_cache_hit_tokens`,
    Together's top-level `cached_tokens` or Anthropic's `cache_read_input_tokens` (Databricks, gateways);
    cache writes from `cache_write_tokens` or `cache_creation_input_tokens`; audio from the details'
    `audio_tokens` (an audio model's input audio not read from the cache). Gemini and xAI count
    reasoning outside `completion_tokens` (their `total_tokens` says so): it is added to the output then.
    Subsets are clamped to their totals. A total that is present but not a usable count voids the usage:
    no tokens beat a wrong cost.
    """
    if usage is None or type(usage) in (str, int, float, bool, list):
        return None
    return _usage(fields(usage))


def _usage(usage: Mapping[str, Any]) -> Usage | None:
    """`parse_usage` of a usage's fields. Absent and zero counts cost no call: most usages leave most
    out or at 0."""
    get = usage.get
    raw_input, raw_output = get("prompt_tokens"), get("completion_tokens")
    if raw_input is None and raw_output is None:
        raw_input, raw_output = get("input_tokens"), get("output_tokens")
        if raw_input is None and raw_output is None:
            return None
        input_details, output_details = get("input_tokens_details"), get("output_tokens_details")
    else:
        input_details, output_details = get("prompt_tokens_details"), get("completion_tokens_details")
    input_tokens = 0 if raw_input is None else count(raw_input)
    output_tokens = 0 if raw_output is None else count(raw_output)
    if input_tokens is None or output_tokens is None:
        return None
    cached = cache_write = reasoning = input_audio = output_audio = None
    if input_details is not None:
        input_details = fields(input_details)
        cached, cache_write = input_details.get("cached_tokens"), input_details.get("cache_write_tokens")
        input_audio = input_details.get("audio_tokens")
    if cached is None:
        cached = get("prompt_cache_hit_tokens")  # DeepSeek
        if cached is None:
            cached = get("cached_tokens")  # Together
            if cached is None:
                cached = get("cache_read_input_tokens")  # Anthropic's names: Databricks, gateways
    if cache_write is None:
        cache_write = get("cache_creation_input_tokens")
    cache_read = min(count(cached) or 0, input_tokens) if cached else 0
    cache_write = min(count(cache_write) or 0, input_tokens - cache_read) if cache_write else 0
    if input_audio:  # apart from the cached and cache-write counts, as genai-prices reads it
        input_audio = min(count(input_audio) or 0, input_tokens - cache_read - cache_write)
    if output_details is not None:
        output_details = fields(output_details)
        reasoning, output_audio = output_details.get("reasoning_tokens"), output_details.get("audio_tokens")
    reasoning = (count(reasoning) or 0) if reasoning else 0
    if reasoning and count(get("total_tokens")) == input_tokens + output_tokens + reasoning:
        output_tokens = min(output_tokens + reasoning, MAX_TOKENS)  # billed as output, counted apart
    if output_audio:
        output_audio = min(count(output_audio) or 0, output_tokens)
    return Usage(
        input_tokens,
        output_tokens,
        cache_read,
        cache_write,
        min(reasoning, output_tokens),
        input_audio or 0,
        output_audio or 0,
    )


MAX_FINISH_REASONS = 128  # one per choice; a hostile stream must not grow this without bound


@dataclass(slots=True)
class Outcome:
    """What a response (or the chunks of a stream, as they pass) said about the call."""

    response_model: str | None = None
    response_id: str | None = None
    service_tier: str | None = None  # the tier that served the call, as OpenAI's responses state it
    system_fingerprint: str | None = None  # OpenAI's backend configuration, as its responses state it
    finished: dict[int, str] = field(default_factory=dict)  # each finished choice's reason, by its index
    usage: Usage | None = None
    generations: dict[int, Any] | None = None  # content.Generation by choice, when content is captured
    reported_cost: Decimal | None = None  # what the provider says the call cost (OpenRouter, LiteLLM)
    failure: str | None = None  # the error a response reports over a successful HTTP status

    @property
    def finish_reasons(self) -> list[str]:
        """One reason per finished choice, in the choices' order."""
        finished = self.finished
        if len(finished) < 2:
            return list(finished.values())
        return [finished[index] for index in sorted(finished)]


def reported_cost(value: Any) -> Decimal | None:
    """A cost in USD as a provider states it (a number), or None."""
    if value.__class__ in (int, float) and 0 <= value < 1e9 and value == value:
        return Decimal(repr(value)) if value.__class__ is float else Decimal(value)
    if value.__class__ is str:
        try:
            return reported_cost(float(value))
        except ValueError:
            return None
    return None


def usage_cost(usage: Any) -> Decimal | None:
    """The cost a provider states in its usage: OpenRouter's `cost` (plus the upstream cost when the
    call used the user's own key), Perplexity's `cost.total_cost` (a breakdown, in USD), xAI's
    `cost_in_usd_ticks` (1e-10 USD)."""
    usage = fields(usage)
    cost = usage.get("cost")
    if cost is not None:
        if cost.__class__ not in (int, float, str):
            return _total_cost(fields(cost))
        stated = reported_cost(cost)
        if stated is not None and usage.get("is_byok") is True:
            upstream = reported_cost(get(usage.get("cost_details") or _EMPTY, "upstream_inference_cost"))
            stated = MONEY.add(stated, upstream or 0)
        return stated
    ticks = usage.get("cost_in_usd_ticks")
    if ticks.__class__ is int and ticks >= 0:
        return MONEY.divide(Decimal(ticks), XAI_TICKS_PER_USD)
    return None


def _total_cost(breakdown: Mapping[str, Any]) -> Decimal | None:
    """The total of a stated cost's breakdown, when it is in USD (Perplexity's states no currency in
    Sonar chat completions, "USD" in its Agent API)."""
    if breakdown.get("currency") not in (None, "USD", "usd"):
        return None
    total = breakdown.get("total_cost")
    return None if total is None else reported_cost(total)


def _text(value: Any) -> str | None:
    """A string member that says something (a service tier, a fingerprint), else None."""
    return value if value.__class__ is str and value else None


def _take_usage(outcome: Outcome, usage: Any) -> None:
    usage = fields(usage)
    outcome.usage = _usage(usage) or outcome.usage
    cost = usage_cost(usage)
    if cost is not None:
        outcome.reported_cost = cost


def _finish_reasons(outcome: Outcome, choices: Any) -> bool:
    """Note the choices' finish reasons (a bounded number); True when one finished here."""
    finished = False
    for position, choice in enumerate(choices):
        if type(choice) is dict:
            reason = choice.get("finish_reason")
        else:
            try:  # an SDK model's declared field: a plain attribute, read without a lookup by name
                reason = choice.finish_reason
            except AttributeError:
                reason = get(choice, "finish_reason")
        if reason:
            finished = True
            _note_reason(outcome, choice, reason, position)
    return finished


def _note_reason(outcome: Outcome, choice: Any, reason: Any, position: int) -> None:
    """Note the reason a choice finished, once per choice (a provider may repeat it in a later chunk):
    by its index, or its position among the choices where it has none."""
    finished = outcome.finished
    index = get(choice, "index")
    if index.__class__ is not int:
        index = position
    if index not in finished and len(finished) < MAX_FINISH_REASONS:
        finished[index] = str(reason)


def _read_choices(outcome: Outcome, body: Any) -> None:
    body = fields(body)
    outcome.response_model = body.get("model") or outcome.response_model
    outcome.response_id = body.get("id") or outcome.response_id
    outcome.service_tier = _text(body.get("service_tier")) or outcome.service_tier
    outcome.system_fingerprint = _text(body.get("system_fingerprint"))
    choices = body.get("choices")
    if choices:
        _finish_reasons(outcome, choices)
    usage = body.get("usage")
    if usage is not None:
        _take_usage(outcome, usage)


def _read_embeddings(outcome: Outcome, body: Any) -> None:
    outcome.response_model = get(body, "model") or outcome.response_model
    usage = get(body, "usage")
    if usage is not None:
        _take_usage(outcome, usage)


def _read_response(outcome: Outcome, body: Any) -> None:
    body = fields(body)
    outcome.response_model = body.get("model") or outcome.response_model
    outcome.response_id = body.get("id") or outcome.response_id
    outcome.service_tier = _text(body.get("service_tier")) or outcome.service_tier
    status = _text(body.get("status"))
    if status and status not in UNFINISHED_STATUSES:
        outcome.finished = {0: status}
        if status == "failed":  # answered, but the response failed: its error's code is the call's
            code = get(body.get("error"), "code")
            outcome.failure = code if isinstance(code, str) and code else "failed"
    usage = body.get("usage")
    if usage is not None:
        _take_usage(outcome, usage)
    tool_usage = body.get("tool_usage")
    if tool_usage is not None:
        _take_tool_usage(outcome, tool_usage)


def _take_tool_usage(outcome: Outcome, tool_usage: Any) -> None:
    """The billable web searches a Responses API response's hosted tool made (`tool_usage.web_search`)."""
    searches = count(get(get(tool_usage, "web_search"), "num_requests"))
    if searches and outcome.usage is not None:  # beside usable token counts: no tokens, no cost
        outcome.usage = outcome.usage._replace(web_searches=searches)


def _read_choices_chunk(outcome: Outcome, chunk: Any) -> bool | None:
    """Read one Chat Completions / Completions chunk; True when it is the usage-only chunk, None when it
    has no usage.

    Runs for every chunk, so the common one (an SDK model, one choice, not finished) costs two field
    reads and one more for its choice, and no call: each read of an SDK model's field is ~400
    instructions, since its class defines `__getattr__` (Python 3.11 specializes none of them).
    """
    if type(chunk) is dict:
        choices, usage = chunk.get("choices"), chunk.get("usage")
    else:
        try:  # an SDK model's declared fields: plain attributes, the cheapest read for every chunk
            choices, usage = chunk.choices, chunk.usage
        except AttributeError:
            members = fields(chunk)
            choices, usage = members.get("choices"), members.get("usage")
    if not outcome.response_model:  # Azure's first chunk (content filter results) may have no model
        outcome.response_model = get(chunk, "model")
        outcome.response_id = get(chunk, "id")
        outcome.service_tier = _text(get(chunk, "service_tier"))
        outcome.system_fingerprint = _text(get(chunk, "system_fingerprint"))
    finished = False
    if choices:
        if type(choices) is list and len(choices) == 1 and type(choices[0]) is not dict:
            try:
                reason = choices[0].finish_reason
            except AttributeError:
                reason = get(choices[0], "finish_reason")
            if reason:
                finished = True
                _note_reason(outcome, choices[0], reason, 0)
        else:
            finished = _finish_reasons(outcome, choices)
    if usage is None:
        if not finished:
            return None
        extra = get(chunk, "x_groq")  # Groq: usage in the finishing chunk's x_groq
        usage = get(extra, "usage") if extra is not None else None
        if usage is None:
            return None
    _take_usage(outcome, usage)
    return not choices


def is_usage_chunk(chunk: Any) -> bool:
    """Whether a chunk is a usage-only one (usage, no choices), what `include_usage` adds to a stream."""
    return not get(chunk, "choices") and get(chunk, "usage") is not None


def _read_response_event(outcome: Outcome, event: Any) -> bool:
    """Read one Responses API stream event (never hidden: Responses always reports usage)."""
    kind = get(event, "type")
    if kind in RESPONSE_EVENTS_WITH_BODY:
        _read_response(outcome, get(event, "response"))
    elif kind == "error":  # the stream ends in an error, its response unfinished: the call failed
        code = get(event, "code") or get(get(event, "error"), "code")  # flat, or nested as the API sends
        outcome.failure = code if isinstance(code, str) and code else "error"
    return False


# A response's status while it is not done: no reason it stopped (a background response is `queued`).
UNFINISHED_STATUSES = frozenset({"in_progress", "queued"})
RESPONSE_EVENTS_WITH_BODY = frozenset(
    {"response.created", "response.completed", "response.incomplete", "response.failed"}
)
# What `_read_response` reads of a Responses body.
RESPONSE_KEYS = ("model", "id", "service_tier", "status", "error", "usage", "tool_usage")


def _walk_response_body(body: bytes) -> dict[str, Any] | None:
    """A Responses body as raw bytes, read without its `output` (which may hold a generated image)."""
    return top_level_members(body, RESPONSE_KEYS)


# What `_read_choices` reads of a body.
CHOICES_KEYS = ("model", "id", "service_tier", "system_fingerprint", "choices", "usage")


def _walk_choices_body(body: bytes) -> dict[str, Any] | None:
    """A Chat Completions or Completions body as raw bytes, read without its messages (which may hold
    generated audio): its model, id and usage, and each choice's finish reason."""
    members = top_level_members(body, CHOICES_KEYS, raw=("choices",))
    choices = members.get("choices") if members else None
    if choices is not None:
        steps = len(body) // BYTES_PER_STEP  # the whole body's budget: the choices are most of it
        members["choices"] = element_members(choices, ("index", "finish_reason"), max_steps=steps)
        if members["choices"] is None:
            return None
    return members


def _walk_response_event(payload: bytes) -> dict[str, Any] | None:
    """A Responses stream event as raw bytes, read without its response's `output` (which may hold a
    generated image): its type and its response's members `_read_response` reads. None when that
    cannot be done; the caller then decodes it whole."""
    event = top_level_members(payload, ("type", "response"), raw=("response",))
    response = event.get("response") if event else None
    if response is not None:
        event["response"] = top_level_members(response, RESPONSE_KEYS)
        if event["response"] is None:
            return None
    return event


@dataclass(frozen=True, slots=True)
class Operation:
    """One OpenAI-compatible endpoint: its operation name and how its responses are read."""

    name: str
    api_type: str | None
    read: Callable[[Outcome, Any], None]
    read_chunk: Callable[[Outcome, Any], bool | None]  # True: the usage-only chunk; None: no usage
    accepts_stream_options: bool
    # How a transport holding a raw body reads it without decoding it all (`json_tail`). `tail_keys`:
    # the members `read` needs follow all others and are read from the body's end (an embeddings body is
    # megabytes of floats before its `model` and `usage`). `walk_body`, `walk_event`: a large body or
    # stream event is walked to what `read` needs, stepping over the rest (a generated image or audio);
    # they return None when they cannot, and the body is then decoded whole.
    tail_keys: tuple[str, ...] = ()
    walk_body: Callable[[bytes], dict[str, Any] | None] | None = None
    walk_event: Callable[[bytes], dict[str, Any] | None] | None = None
    # Whether the endpoint generates output tokens: an embeddings call reports input tokens alone, and
    # records output tokens only if its provider counts some.
    generates: bool = True


CHAT_COMPLETIONS = Operation(
    names.CHAT, "chat_completions", _read_choices, _read_choices_chunk, True, walk_body=_walk_choices_body
)
RESPONSES = Operation(
    names.CHAT,
    "responses",
    _read_response,
    _read_response_event,
    False,
    walk_body=_walk_response_body,
    walk_event=_walk_response_event,
)
COMPLETIONS = Operation(
    names.TEXT_COMPLETION, None, _read_choices, _read_choices_chunk, True, walk_body=_walk_choices_body
)
EMBEDDINGS = Operation(
    names.EMBEDDINGS,
    None,
    _read_embeddings,
    _read_choices_chunk,
    False,
    tail_keys=("model", "usage"),
    generates=False,
)
# A model's answers to questions about an input (openai 3.x `decisions.create`): billed as the
# model's tokens, which it reports in the Responses API's usage shape.
DECISIONS = Operation(names.CHAT, None, _read_response, _read_response_event, False)

_BY_SUFFIX = (
    ("/chat/completions", CHAT_COMPLETIONS),
    ("/completions", COMPLETIONS),
    ("/embeddings", EMBEDDINGS),
    ("/responses", RESPONSES),
    ("/responses/compact", RESPONSES),  # a compaction pass: billed as a Responses call, in its shape
    ("/decisions", DECISIONS),  # the SDK's only: too common a path for `requests` to take as a model call
)


@lru_cache(maxsize=512)
def operation_for(path: str) -> Operation | None:
    """The operation a request path names, or None for any other endpoint (cached: a service calls
    the same few paths)."""
    path = path.split("?", 1)[0].rstrip("/")  # the SDK's beta Responses go to `/responses?beta=true`
    for suffix, operation in _BY_SUFFIX:
        if path.endswith(suffix):
            return operation
    return None
