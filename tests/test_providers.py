"""Every OpenAI-compatible provider priced right, through the SDK and `requests`, streaming and not.

Each case in tests/data/providers/ is a provider's real usage dialect (see its README). The client
talks to the provider's real base URL; a transport below the instrumentation carries the request to
the local server, which answers with that provider's recorded body.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import genai_prices
import openai
import openai._base_client as base_client
import pytest
import requests
from requests.adapters import HTTPAdapter

from otel_tokencost import OpenAIInstrumentor, RequestsInstrumentor, names, track
from otel_tokencost import telemetry as telemetry_module
from otel_tokencost.providers import asks_for_stream_usage, endpoint_for
from otel_tokencost.telemetry import Telemetry

from conftest import API_KEY

CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
DATA = Path(__file__).parent / "data" / "providers"
CASES = {path.stem: json.loads(path.read_text()) for path in sorted(DATA.glob("*.json"))}
SUFFIXES = ("/chat/completions", "/responses")
HAS_RESPONSES = hasattr(openai.OpenAI(api_key="x", base_url="http://127.0.0.1:1"), "responses")
httpx_module = getattr(base_client, "httpx2", None) or base_client.httpx

# Self-hosted servers and a LiteLLM proxy are known only to the team's prices file.
PRICES = {
    "providers": [
        {
            "match": "localhost:8000",
            "provider": "vllm",
            "models": {"Qwen/Qwen3-8B": {"input_mtok": 0.05, "cache_read_mtok": 0.01, "output_mtok": 0.2}},
        },
        {
            "match": "localhost:11434",
            "provider": "ollama",
            "models": {"llama3.2:3b": {"input_mtok": 0.0, "output_mtok": 0.0}},
        },
        {"match": "localhost:4000", "provider": "litellm", "prices_from": "openai"},
    ]
}


def local_path(path: str) -> str:
    return "/v1" + next(suffix for suffix in SUFFIXES if path.rstrip("/").endswith(suffix))


class ToLocalServer(httpx_module.HTTPTransport):
    """Sends what the SDK addressed to a provider to the local server instead."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    def handle_request(self, request):
        request.url = request.url.copy_with(
            scheme="http", host="127.0.0.1", port=self.port, path=local_path(request.url.path), query=None
        )
        return super().handle_request(request)


class ToLocalServerAdapter(HTTPAdapter):
    """The same for `requests`, mounted on the provider's URL."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    def send(self, request, **kwargs):
        request.url = f"http://127.0.0.1:{self.port}{local_path(request.url.split('?')[0])}"
        return super().send(request, **kwargs)


def speaks_responses(case: dict) -> bool:
    """Whether the provider's case is in the Responses API's format (else Chat Completions')."""
    return case.get("api") == "responses"


def mock_headers(case: dict, stream: bool) -> dict[str, str]:
    if stream:
        body = "".join(f"data: {json.dumps(event)}\n\n" for event in case["streaming"])
        if not speaks_responses(case):
            body += "data: [DONE]\n\n"
        content_type = "text/event-stream"
    else:
        body, content_type = json.dumps(case["non_streaming"]), "application/json"
    headers = {
        "x-mock-raw-body-b64": base64.b64encode(body.encode()).decode(),
        "x-mock-content-type": content_type,
    }
    if case.get("response_headers") and not stream:
        headers["x-mock-response-headers"] = json.dumps(case["response_headers"])
    if case.get("rejects_request_members"):  # the provider answers 422 to a request that has them
        headers["x-mock-reject-members"] = ",".join(case["rejects_request_members"])
    return headers


def sdk_client(case: dict, port: int):
    http_client = httpx_module.Client(transport=ToLocalServer(port))
    if case["provider"] == "azure_openai":
        return openai.AzureOpenAI(
            azure_endpoint="https://my-resource.openai.azure.com",
            azure_deployment=case["request_model"],
            api_version="2024-10-21",
            api_key=API_KEY,
            http_client=http_client,
            max_retries=0,
        )
    return openai.OpenAI(base_url=case["base_url"], api_key=API_KEY, http_client=http_client, max_retries=0)


def call_sdk(case: dict, port: int, stream: bool) -> None:
    client = sdk_client(case, port)
    headers = mock_headers(case, stream)
    if speaks_responses(case):
        result = client.responses.create(
            model=case["request_model"], input="hi", stream=stream, extra_headers=headers
        )
    else:
        result = client.chat.completions.create(
            model=case["request_model"],
            messages=[{"role": "user", "content": "hi"}],
            stream=stream,
            extra_headers=headers,
        )
    if stream:
        for _ in result:
            pass


def call_requests(case: dict, port: int, stream: bool) -> None:
    base = case["base_url"].rstrip("/")
    path = "/responses" if speaks_responses(case) else "/chat/completions"
    url = base + path + ("?api-version=2024-10-21" if case["provider"] == "azure_openai" else "")
    body = {"model": case["request_model"], "stream": stream}
    body |= {"input": "hi"} if path == "/responses" else {"messages": [{"role": "user", "content": "hi"}]}
    with requests.Session() as session:
        session.mount(base, ToLocalServerAdapter(port))
        headers = {"Authorization": f"Bearer {API_KEY}", **mock_headers(case, stream)}
        response = session.post(url, json=body, headers=headers, stream=stream, timeout=10)
        for _ in response.iter_lines():
            pass
        response.close()


def response_model(case: dict, stream: bool) -> str:
    """The model the body names: a stream's first chunk that names one, or the whole response's."""
    if not stream:
        return case["non_streaming"]["model"]
    for event in case["streaming"]:
        model = event.get("model") or (event.get("response") or {}).get("model")
        if model:
            return model
    raise AssertionError("no model in the stream")


def expected_cost(case: dict) -> tuple[float | None, str | None]:
    """The cost and pricing source: the provider's own figure, the prices file, or genai-prices."""
    expected = case["expected"]
    if expected["provider_reported_cost_usd"] is not None:
        return float(Decimal(str(expected["provider_reported_cost_usd"]))), "provider"
    usage = genai_prices.Usage(
        input_tokens=expected["input_tokens"],
        output_tokens=expected["output_tokens"],
        cache_read_tokens=expected["cache_read_tokens"],
        cache_write_tokens=expected["cache_write_tokens"],
    )
    for entry in PRICES["providers"]:
        if entry["match"] in case["base_url"] and case["request_model"] in entry.get("models", {}):
            rates = {k: Decimal(str(v)) for k, v in entry["models"][case["request_model"]].items()}
            fresh = expected["input_tokens"] - expected["cache_read_tokens"]
            total = (
                rates["input_mtok"] * fresh
                + rates.get("cache_read_mtok", rates["input_mtok"]) * expected["cache_read_tokens"]
                + rates["output_mtok"] * expected["output_tokens"]
            )
            return float(total / 1_000_000), "prices-file"
    provider = case["genai_prices_provider_id"]
    now = datetime.now(tz=UTC)
    for model in (case.get("response_model"), case["request_model"]):
        try:
            kwargs = {"provider_id": provider} if provider else {}
            price = genai_prices.calc_price(usage, model, genai_request_timestamp=now, **kwargs)
        except LookupError:
            continue
        return float(price.total_price), "genai-prices" if provider else "genai-prices:model-only"
    return None, None


@pytest.fixture
def both(telemetry, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    for instrumentor in (OpenAIInstrumentor(), RequestsInstrumentor()):
        instrumentor.instrument(
            tracer_provider=telemetry.tracer_provider,
            meter_provider=telemetry.meter_provider,
            prices=str(prices),
        )
    yield telemetry
    OpenAIInstrumentor().uninstrument()
    RequestsInstrumentor().uninstrument()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("transport", [call_sdk, call_requests], ids=["sdk", "requests"])
@pytest.mark.parametrize("name", list(CASES))
def test_provider(both, server, name: str, transport, stream: bool) -> None:
    case = CASES[name]
    if speaks_responses(case) and transport is call_sdk and not HAS_RESPONSES:
        pytest.skip("this openai has no Responses API")
    transport(case, server.port, stream)
    span = both.span()
    attributes = span.attributes
    expected = case["expected"]
    provider_name = {"litellm_proxy": "litellm"}.get(name, case["semconv_provider_name"])
    assert attributes[names.PROVIDER_NAME] == provider_name
    assert attributes[names.RESPONSE_MODEL] == response_model(case, stream)
    assert attributes[names.USAGE_INPUT_TOKENS] == expected["input_tokens"]
    assert attributes[names.USAGE_OUTPUT_TOKENS] == expected["output_tokens"]
    for attribute, key in (
        (names.USAGE_CACHE_READ_INPUT_TOKENS, "cache_read_tokens"),
        (names.USAGE_CACHE_CREATION_INPUT_TOKENS, "cache_write_tokens"),
        (names.USAGE_REASONING_OUTPUT_TOKENS, "reasoning_tokens"),
    ):
        assert attributes.get(attribute, 0) == expected[key], attribute
    cost, source = expected_cost(case)
    if name == "litellm_proxy" and stream:
        source = "provider"  # the streamed usage carries the proxy's cost
    assert attributes.get(names.USAGE_COST_AMOUNT) == cost
    assert attributes.get(names.PRICING_SOURCE) == source


# The recorded providers whose streams report usage unasked (data/providers/README.md).
UNASKED = ["deepseek", "fireworks", "groq", "mistral", "openrouter", "perplexity", "together"]


@pytest.mark.parametrize("name", UNASKED)
def test_a_stream_that_reports_its_usage_unasked_reaches_the_app_as_sent(both, server, name: str) -> None:
    """Nothing is asked of a provider whose streams report their usage anyway: every chunk it sends, its
    usage chunk too, reaches the app as it would uninstrumented."""
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    case = CASES[name]

    def chunks() -> list[dict]:
        stream = sdk_client(case, server.port).chat.completions.create(
            model=case["request_model"],
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            extra_headers=mock_headers(case, True),
        )
        return [(chunk.to_dict(), chunk.model_fields_set) for chunk in stream]

    with suppress_instrumentation():
        sent = chunks()
    assert chunks() == sent
    assert "stream_options" not in server.last_bodies[-1]
    assert both.span().attributes[names.USAGE_INPUT_TOKENS] == case["expected"]["input_tokens"]


# A cost stated with no token counts beside it: a LiteLLM proxy's header over a response without usage,
# and a usage that has a cost (as OpenRouter states it) but no token fields.
STATED_WITHOUT_TOKENS = {
    "litellm-header": (
        {"x-mock-usage": "none", "x-mock-response-headers": json.dumps({"x-litellm-response-cost": "0.5"})},
        Decimal("0.5"),
    ),
    "usage-cost-only": ({"x-mock-usage": json.dumps({"cost": 0.25})}, Decimal("0.25")),
}


@pytest.mark.parametrize("transport", ["sdk", "requests"])
@pytest.mark.parametrize("case", list(STATED_WITHOUT_TOKENS))
def test_a_cost_the_provider_states_counts_without_token_counts(
    both, server, case: str, transport: str
) -> None:
    """The span, the cost metric and the Spend all carry it."""
    headers, stated = STATED_WITHOUT_TOKENS[case]
    body = {"model": "gateway-model", "messages": [{"role": "user", "content": "hi"}]}
    with track(tracking_id="gateway") as spend:
        if transport == "sdk":
            with openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0) as client:
                client.chat.completions.create(**body, extra_headers=headers)
        else:
            headers = {"Authorization": f"Bearer {API_KEY}", **headers}
            requests.post(f"{server.base_url}/chat/completions", json=body, headers=headers, timeout=10)
    attributes = both.span().attributes
    assert names.USAGE_INPUT_TOKENS not in attributes
    assert attributes[names.USAGE_COST_AMOUNT] == float(stated)
    assert attributes[names.PRICING_SOURCE] == "provider"
    (point,) = both.points(names.METRIC_COST)
    assert (point.count, point.sum) == (1, float(stated))
    assert (spend.calls, spend.input_tokens, spend.cost, spend.unpriced_calls) == (1, 0, stated, 0)


@pytest.mark.parametrize(
    ("value", "captured", "warned"),
    [
        ("true", True, False),
        (" true", True, False),
        ("TRUE", True, False),
        ("\tTrue \n", True, False),
        ("false", False, False),
        (" FALSE ", False, False),
        ("", False, False),
        ("1", False, True),
        ("yes", False, True),
        ("maybe", False, True),
    ],
)
def test_capture_content_setting(monkeypatch, caplog, value: str, captured: bool, warned: bool) -> None:
    """`true` or `false` in any case and spacing; anything else means false and is logged once, by the
    settings that instrumentors given no option (as under opentelemetry-instrument) share."""
    monkeypatch.setenv(CAPTURE_CONTENT_ENV, value)
    monkeypatch.setattr(telemetry_module, "_from_environment", None)
    shared = [Telemetry.for_instrumentor({}) for _ in ("openai", "requests")]
    assert [item.capture_content for item in shared] == [captured, captured]
    warning = f"{CAPTURE_CONTENT_ENV}={value.strip().lower()!r} is not true or false; using false"
    assert caplog.text.count(warning) == caplog.text.count("WARNING") == int(warned)


AZURE_VERSIONS = [
    ("2024-06-01", False),
    ("2024-08-01-preview", False),
    ("2024-09-01-preview", True),
    ("2024-10-21", True),
]


@pytest.mark.parametrize(("api_version", "takes_stream_options"), AZURE_VERSIONS)
def test_azure_streams_ask_for_usage_only_where_the_api_version_takes_it(
    both, server, api_version: str, takes_stream_options: bool
) -> None:
    """Azure OpenAI refuses `stream_options` before API version 2024-09-01 (here: a 422, as the server
    answers a member it does not take): a stream there is sent as the app made it, and has no usage to
    price; from that version on usage is asked for and priced."""
    case = CASES["azure_openai"]
    client = openai.AzureOpenAI(
        azure_endpoint="https://my-resource.openai.azure.com",
        azure_deployment=case["request_model"],
        api_version=api_version,
        api_key=API_KEY,
        http_client=httpx_module.Client(transport=ToLocalServer(server.port)),
        max_retries=0,
    )
    headers = {
        "x-mock-chunks": "3",
        "x-mock-reject-members": "" if takes_stream_options else "stream_options",
    }
    messages = [{"role": "user", "content": "hi"}]
    stream = client.chat.completions.create(
        model=case["request_model"], messages=messages, stream=True, extra_headers=headers
    )
    chunks = list(stream)
    assert len(chunks) == 5 and all(chunk.choices for chunk in chunks)  # role, 3 words, finish
    assert ("stream_options" in server.last_bodies[-1]) is takes_stream_options
    attributes = both.span().attributes
    assert attributes[names.PROVIDER_NAME] == "azure.ai.openai"
    assert attributes.get(names.USAGE_OUTPUT_TOKENS) == (3 if takes_stream_options else None)


@pytest.mark.parametrize(
    ("base_url", "named", "api_version", "accepted"),
    [
        ("https://r.openai.azure.com", None, None, True),  # Azure's v1 API has no api-version, takes them
        ("https://r.openai.azure.com", None, "preview", True),
        ("https://r.openai.azure.com", None, "2024-05-01-preview", False),
        ("https://api.mistral.ai/v1", None, None, False),
        ("https://api.openai.com/v1", None, "2020-01-01", True),  # an api-version means nothing elsewhere
        ("https://api.deepseek.com", None, None, False),
        ("https://api.groq.com/openai/v1", None, None, False),
        ("https://openrouter.ai/api/v1", None, None, False),
        ("https://api.together.xyz/v1", None, None, False),
        ("https://api.perplexity.ai", None, None, False),
        # A self-hosted server a prices file names after a provider streams as the server does
        ("http://localhost:8000/v1", "deepseek", None, True),
    ],
)
def test_which_providers_are_asked_for_stream_usage(
    base_url: str, named: str | None, api_version: str | None, accepted: bool
) -> None:
    """Not those that refuse the request for it, nor those whose own API reports it unasked."""
    assert asks_for_stream_usage(endpoint_for(base_url, named), api_version) is accepted
