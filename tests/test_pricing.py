"""Pricing: local arithmetic equals genai-prices', resolution order, and the prices file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import genai_prices
import pytest
from genai_prices.data_snapshot import get_snapshot
from genai_prices.types import ConditionalPrice
from hypothesis import given
from hypothesis import strategies as st

from otel_tokencost.pricing import (
    GENAI_PRICES,
    MODEL_ONLY,
    PRICES_FILE,
    PROVIDER,
    Cost,
    FileProvider,
    Pricer,
    PricesFileError,
    Rate,
    Usage,
    load,
)
from otel_tokencost.pricing.prices_file import FEE_FIELDS, RATE_FIELDS

NOW_NS = 1_780_000_000 * 10**9  # 2026-05-28


def genai_total(
    usage: Usage, model: str, provider: str | None, when_ns: int = NOW_NS, tier: str | None = None
) -> Decimal:
    raw = genai_prices.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_reasoning_tokens=usage.reasoning_tokens,
        input_audio_tokens=usage.input_audio_tokens,
        output_audio_tokens=usage.output_audio_tokens,
        cache_audio_read_tokens=0,  # no chat usage tells cached audio apart: it counts as cached input
        web_searches=usage.web_searches,
    )
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=when_ns // 1000)
    kwargs: dict = {"provider_id": provider} if provider else {}
    if tier is not None:
        kwargs["price_context"] = {"service_tier": tier}
    return genai_prices.calc_price(raw, model, genai_request_timestamp=when, **kwargs).total_price


@pytest.mark.parametrize(
    ("base_url", "provider", "model"),
    [
        ("https://api.openai.com/v1", "openai", "gpt-4o-mini"),
        ("https://api.openai.com/v1", "openai", "gpt-4o-2024-08-06"),
        ("https://api.openai.com/v1", "openai", "gpt-4.1"),
        ("https://api.openai.com/v1", "openai", "text-embedding-3-small"),
        ("https://api.deepseek.com", "deepseek", "deepseek-chat"),
        ("https://api.groq.com/openai/v1", "groq", "llama-3.3-70b-versatile"),
        ("https://api.mistral.ai/v1", "mistral", "mistral-large-latest"),
        ("https://generativelanguage.googleapis.com/v1beta/openai/", "google", "gemini-2.5-pro"),
        ("https://generativelanguage.googleapis.com/v1beta/openai/", "google", "gemini-2.5-flash"),
        ("https://api.openai.com/v1", "openai", "gpt-audio"),
        ("https://api.openai.com/v1", "openai", "gpt-audio-mini"),
        ("https://api.openai.com/v1", "openai", "gpt-4o-audio-preview"),
        ("https://api.perplexity.ai", "perplexity", "sonar"),  # a fee per request as well
        ("https://api.perplexity.ai", "perplexity", "sonar-pro"),
    ],
)
@pytest.mark.parametrize(
    "usage",
    [
        Usage(input_tokens=1000, output_tokens=200),
        Usage(input_tokens=1000, output_tokens=200, cache_read_tokens=800),
        Usage(
            input_tokens=300_000, output_tokens=5_000, cache_read_tokens=100_000
        ),  # past long-context tiers
        Usage(input_tokens=1000, output_tokens=400, input_audio_tokens=700, output_audio_tokens=350),
        Usage(
            input_tokens=1000,
            output_tokens=400,
            cache_read_tokens=200,
            input_audio_tokens=500,
            output_audio_tokens=350,
        ),
    ],
)
def test_cost_equals_genai_prices(base_url: str, provider: str, model: str, usage: Usage) -> None:
    cost = Pricer().price(base_url, model, None, usage, NOW_NS)
    assert cost is not None
    assert cost.source == GENAI_PRICES
    assert cost.usd == genai_total(usage, model, provider)
    assert cost.amount == float(genai_total(usage, model, provider))
    assert cost.currency == "USD"


@pytest.mark.parametrize(
    ("base_url", "provider", "model"),
    [
        ("https://api.together.ai/v1", "together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
        ("https://eu.api.openai.com/v1", "openai", "text-embedding-3-small"),
        ("https://us.api.openai.com/v1", "openai", "gpt-4o"),
        ("https://codestral.mistral.ai/v1", "mistral", "codestral-latest"),
    ],
)
def test_a_providers_host_genai_prices_does_not_know_is_its_providers(
    base_url: str, provider: str, model: str
) -> None:
    """Together's documented host, OpenAI's regional hosts, Codestral's: genai-prices' URL patterns miss
    them, and the model-only lookup does not find every model (embeddings, `meta-llama/...`)."""
    usage = Usage(input_tokens=1000, output_tokens=200)
    cost = Pricer().price(base_url, model, None, usage, NOW_NS)
    assert (cost.source, cost.usd) == (GENAI_PRICES, genai_total(usage, model, provider))


@pytest.mark.parametrize("model", ["google/gemini-2.5-flash", "google/gemini-2.5-pro"])
def test_vertex_ai_s_publisher_prefixed_gemini_names_are_priced(model: str) -> None:
    base_url = (
        "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1/endpoints/openapi"
    )
    usage = Usage(input_tokens=1000, output_tokens=200)
    cost = Pricer().price(base_url, model, None, usage, NOW_NS)
    assert (cost.source, cost.usd) == (GENAI_PRICES, genai_total(usage, model[7:], "google"))


@pytest.mark.parametrize(
    ("base_url", "provider", "model"),
    [
        ("https://API.GROQ.COM/openai/v1", "groq", "llama-3.3-70b-versatile"),
        ("HTTPS://Api.OpenAI.com/v1", "openai", "gpt-4o"),
    ],
)
def test_a_host_written_in_capitals_is_its_providers(base_url: str, provider: str, model: str) -> None:
    """Host names are case-insensitive: `requests` sends the URL as written, genai-prices' patterns are
    lower case."""
    usage = Usage(input_tokens=1000, output_tokens=200)
    cost = Pricer().price(base_url, model, None, usage, NOW_NS)
    assert (cost.source, cost.usd) == (GENAI_PRICES, genai_total(usage, model, provider))


@pytest.mark.parametrize(
    ("base_url", "provider", "model"),
    [
        ("https://api.perplexity.ai", "perplexity", "sonar-deep-research"),
        ("https://openrouter.ai/api/v1", "openrouter", "perplexity/sonar-deep-research"),
    ],
)
def test_reasoning_tokens_cost_the_reasoning_rate(base_url: str, provider: str, model: str) -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, reasoning_tokens=400_000)
    cost = Pricer().price(base_url, model, None, usage, NOW_NS)
    as_output = genai_total(usage._replace(reasoning_tokens=0), model, provider)
    assert (cost.source, cost.usd) == (GENAI_PRICES, genai_total(usage, model, provider))
    assert cost.usd != as_output  # the reasoning rate is not the output rate


@pytest.mark.parametrize(
    ("base_url", "provider", "model"),
    [("https://api.openai.com/v1", "openai", "gpt-4.1"), ("http://127.0.0.1:9/v1", None, "gpt-5")],
)
def test_web_searches_cost_their_fee(base_url: str, provider: str | None, model: str) -> None:
    """The Responses API's hosted web search bills per search (its `tool_usage`), beside the tokens."""
    usage = Usage(input_tokens=1000, output_tokens=200, cache_read_tokens=300, web_searches=40)
    cost = Pricer().price(base_url, model, None, usage, NOW_NS)
    assert cost.usd == genai_total(usage, model, provider)
    assert cost.usd - genai_total(usage._replace(web_searches=0), model, provider) == Decimal("0.4")


def test_a_prices_file_prices_web_searches(tmp_path) -> None:
    path = write(
        tmp_path,
        "prices.toml",
        "[[providers]]\nmatch = 'gw.example'\n[providers.models.m]\ninput_mtok = 1\noutput_mtok = 2\n"
        "web_searches_kcount = 25\n",
    )
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, web_searches=4)
    assert Pricer(load(path)).price("https://gw.example/v1", "m", None, usage, NOW_NS).usd == Decimal("3.1")


# genai-prices' price keys that bill counts no chat usage gives apart: image, video and citation tokens,
# cache writes by TTL, tool calls, and the units of speech, transcription and OCR APIs. genai-prices bills
# such tokens at the text rates when the usage has no count of them, as a Rate does.
OUT_OF_SCOPE_PRICE_KEYS = {
    "input_image_mtok",
    "output_image_mtok",
    "cache_image_read_mtok",
    "input_video_mtok",
    "output_video_mtok",
    "cache_audio_read_mtok",  # no chat usage tells cached audio apart: it is cached input
    "output_citation_mtok",
    "cache_write_1h_mtok",
    "storage_searches_kcount",
    "audio_hours",
    "input_audio_hours",
    "input_mchars",
    "input_text_messages_kcount",
    "input_document_kpages",
    "input_annotated_document_kpages",
}


def test_every_price_key_in_genai_prices_is_priced_or_knowingly_left_out() -> None:
    """A price key genai-prices adds fails here until a Rate prices it or it is added above."""
    rate_keys = {*RATE_FIELDS, *FEE_FIELDS}
    assert rate_keys <= set(Rate.__dataclass_fields__)
    keys = set()
    for provider in get_snapshot().providers:
        for model in provider.models:
            listed = model.prices if isinstance(model.prices, list) else [model.prices]
            prices = [item.prices if isinstance(item, ConditionalPrice) else item for item in listed]
            prices += [variant.prices for variant in getattr(model, "price_variants", None) or ()]
            keys |= {key for price in prices for key, value in vars(price).items() if value is not None}
    assert "output_reasoning_mtok" in keys
    assert keys - rate_keys - OUT_OF_SCOPE_PRICE_KEYS == set()


@pytest.mark.parametrize(
    ("base_url", "model", "tier", "share"),
    [
        ("https://api.openai.com/v1", "o3", "flex", Decimal("0.5")),  # OpenAI bills flex at half
        ("https://api.openai.com/v1", "gpt-5", "flex", Decimal("0.5")),
        ("http://127.0.0.1:9/v1", "gpt-5", "flex", Decimal("0.5")),  # OpenAI's rates by the model's name
        ("https://api.openai.com/v1", "gpt-5", "priority", Decimal(1)),  # standard without tier rates
        ("https://api.openai.com/v1", "gpt-5", "default", Decimal(1)),
        ("https://api.deepseek.com", "deepseek-chat", "flex", Decimal(1)),  # another provider's tier
    ],
)
def test_without_tier_rates_a_flex_call_on_openai_rates_costs_half(
    base_url: str, model: str, tier: str, share: Decimal
) -> None:
    """At NOW_NS genai-prices' rates for service tiers have not started (TIERS_PRICED_NS below)."""
    usage = Usage(input_tokens=12_345, output_tokens=678, cache_read_tokens=4_000, reasoning_tokens=300)
    standard = Pricer().price(base_url, model, None, usage, NOW_NS)
    served = Pricer().price(base_url, model, None, usage, NOW_NS, tier)
    assert served.usd == standard.usd * share
    assert served.amount == float(standard.usd * share)


TIERS_PRICED_NS = 1_795_000_000 * 10**9  # 2026-11-17, when genai-prices has rates for service tiers


@pytest.mark.parametrize(
    ("base_url", "provider", "model", "tier", "standard_share"),
    [
        ("https://api.openai.com/v1", "openai", "gpt-5", "priority", None),
        ("https://api.openai.com/v1", "openai", "gpt-5", "flex", None),
        ("https://api.openai.com/v1", "openai", "gpt-5", "fast", None),
        ("https://api.openai.com/v1", "openai", "gpt-5", "default", Decimal(1)),
        ("https://api.openai.com/v1", "openai", "o3", "priority", None),  # standard rates with a history
        ("https://api.openai.com/v1", "openai", "gpt-4.1", "priority", None),
        ("http://127.0.0.1:9/v1", "openai", "gpt-4.1", "priority", None),  # OpenAI's rates by the name
        ("https://api.openai.com/v1", "openai", "gpt-4o-mini", "flex", Decimal("0.5")),  # no flex rates
        ("https://api.openai.com/v1", "openai", "gpt-4.1", "scale", Decimal(1)),  # a tier priced as standard
        (
            "https://generativelanguage.googleapis.com/v1beta/openai/",
            "google",
            "gemini-3.8-flash-tts",
            "priority",
            None,
        ),
        ("https://api.deepseek.com", "deepseek", "deepseek-chat", "flex", Decimal(1)),  # no tiers there
        # Azure lists OpenAI's models as its own: their standard rates, as genai-prices prices them
        ("https://res.openai.azure.com/openai/v1", "azure", "gpt-5", "priority", Decimal(1)),
        ("https://res.openai.azure.com/openai/v1", "azure", "gpt-5", "flex", Decimal(1)),
    ],
)
def test_a_call_costs_the_rates_of_the_service_tier_that_served_it(
    base_url: str, provider: str, model: str, tier: str, standard_share: Decimal | None
) -> None:
    usage = Usage(input_tokens=12_345, output_tokens=678, cache_read_tokens=4_000, reasoning_tokens=300)
    served = Pricer().price(base_url, model, None, usage, TIERS_PRICED_NS, tier)
    standard = genai_total(usage, model, provider, TIERS_PRICED_NS)
    if standard_share is None:  # genai-prices' rates for the tier, which are not the standard ones
        expected = genai_total(usage, model, provider, TIERS_PRICED_NS, tier)
        assert expected != standard
    else:
        expected = standard * standard_share
    assert served.usd == expected
    assert served.amount == float(expected)
    assert served.source == (GENAI_PRICES if base_url.startswith("https") else MODEL_ONLY)


def test_a_flex_call_priced_by_the_prices_file_costs_what_the_file_says(tmp_path) -> None:
    pricer = Pricer(load(write(tmp_path, "prices.toml", PRICES_TOML)))
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000)
    url = "https://api.holysheep.ai/v1"
    assert pricer.price(url, "deepseek-v3.2", None, usage, NOW_NS, "flex") == pricer.price(
        url, "deepseek-v3.2", None, usage, NOW_NS
    )


def test_tiered_price_steps_up_past_the_threshold() -> None:
    pricer = Pricer()
    small = pricer.price(
        "https://generativelanguage.googleapis.com/", "gemini-2.5-pro", None, Usage(200_000, 0), 0
    )
    large = pricer.price(
        "https://generativelanguage.googleapis.com/", "gemini-2.5-pro", None, Usage(200_001, 0), 0
    )
    assert large.usd / 200_001 > small.usd / 200_000


@pytest.mark.parametrize("model", ["gpt-4o-mini", "O3-mini", "Mixtral-8x7B-Instruct-v0.1"])
def test_unknown_host_falls_back_to_model_name(model: str) -> None:
    """Names are looked up as genai-prices looks them up, whatever their case."""
    usage = Usage(input_tokens=1234, output_tokens=56)
    cost = Pricer().price("http://127.0.0.1:8000/v1", model, None, usage, NOW_NS)
    assert cost.source == MODEL_ONLY
    assert cost.usd == genai_total(usage, model, None)


def test_a_call_just_before_a_price_change_costs_the_price_before() -> None:
    """DeepSeek's off-peak rates end at 16:30 UTC: a call a nanosecond before is still off-peak."""
    change = datetime(2026, 5, 28, 16, 30, tzinfo=UTC)
    change_ns = (change - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    costs = [
        Pricer().price("https://api.deepseek.com", "deepseek-chat", None, usage, when_ns).usd
        for when_ns in (change_ns - 1, change_ns)
    ]
    before = genai_total(usage, "deepseek-chat", "deepseek", change_ns - 1_000)
    assert costs == [before, genai_total(usage, "deepseek-chat", "deepseek", change_ns)]
    assert costs[0] != costs[1]


def test_known_host_that_lacks_the_model_gives_no_cost() -> None:
    assert Pricer().price("https://api.deepseek.com", "gpt-4o-mini", None, Usage(10, 10), NOW_NS) is None


def test_response_model_first_then_request_model() -> None:
    pricer = Pricer()
    usage = Usage(input_tokens=1000, output_tokens=100)
    cost = pricer.price("http://127.0.0.1:9/v1", "no-such-model-xyz", "gpt-4o", usage, NOW_NS)
    assert cost.usd == genai_total(usage, "gpt-4o", None)
    assert pricer.price("http://127.0.0.1:9/v1", "no-such-model-xyz", "nor-this-one", usage, NOW_NS) is None


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


PRICES_TOML = """
[[providers]]
match = "api.holysheep.ai"

[providers.models."deepseek-v3.2"]
input_mtok = 0.10
output_mtok = 0.42
cache_read_mtok = 0.01

[[providers]]
match = "llm-gateway.internal"
prices_from = "openai"

[[providers]]
match = "127.0.0.1:8000"
currency = "CNY"
usd_per_unit = 0.14

[providers.models."qwen-local"]
input_mtok = 2
output_mtok = 8

[[providers]]
match = "http://127.0.0.1:8000/v1/team-a"

[providers.models."qwen-local"]
input_mtok = 1
output_mtok = 1

[[providers]]
match = "search-gateway.internal"
currency = "EUR"
usd_per_unit = 1.1

[providers.models."search-1"]
input_mtok = 0.5
output_mtok = 1.5
requests_kcount = 0.25

[[providers]]
match = "voice-gateway.internal"

[providers.models."voice-1"]
input_mtok = 1
output_mtok = 2
input_audio_mtok = 10
output_audio_mtok = 20
output_reasoning_mtok = 5
"""


def test_prices_file_models_win_over_genai_prices(tmp_path) -> None:
    pricer = Pricer(load(write(tmp_path, "prices.toml", PRICES_TOML)))
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000, cache_read_tokens=600_000)
    cost = pricer.price("https://api.holysheep.ai/v1", "deepseek-v3.2", None, usage, NOW_NS)
    assert cost.source == PRICES_FILE
    assert cost.usd == Decimal("0.10") * Decimal("0.4") + Decimal("0.01") * Decimal("0.6") + Decimal("0.042")


@pytest.mark.parametrize(
    ("usage", "micro_usd"),
    [
        (  # text in, audio in, text out, audio out
            Usage(input_tokens=1000, output_tokens=500, input_audio_tokens=400, output_audio_tokens=300),
            600 * 1 + 400 * 10 + 200 * 2 + 300 * 20,
        ),
        (  # text in, text out, audio out, reasoning
            Usage(input_tokens=1000, output_tokens=500, reasoning_tokens=300, output_audio_tokens=100),
            1000 * 1 + 100 * 2 + 100 * 20 + 300 * 5,
        ),
    ],
    ids=["audio", "reasoning"],
)
def test_prices_file_audio_and_reasoning_rates(tmp_path, usage: Usage, micro_usd: int) -> None:
    pricer = Pricer(load(write(tmp_path, "prices.toml", PRICES_TOML)))
    cost = pricer.price("https://voice-gateway.internal/v1", "voice-1", None, usage, NOW_NS)
    assert (cost.source, cost.usd) == (PRICES_FILE, Decimal(micro_usd) / 10**6)


def test_prices_file_fee_per_request_in_another_currency(tmp_path) -> None:
    pricer = Pricer(load(write(tmp_path, "prices.toml", PRICES_TOML)))
    cost = pricer.price("https://search-gateway.internal/v1", "search-1", None, Usage(2000, 300), NOW_NS)
    billed = Decimal("0.5") * 2000 / 10**6 + Decimal("1.5") * 300 / 10**6 + Decimal("0.25") / 1000
    assert (cost.source, cost.currency, cost.billed, cost.usd) == (
        PRICES_FILE,
        "EUR",
        billed,
        billed * Decimal("1.1"),
    )
    assert (cost.amount, cost.billed_amount) == (float(billed * Decimal("1.1")), float(billed))


def test_prices_from_uses_that_provider(tmp_path) -> None:
    pricer = Pricer(load(write(tmp_path, "prices.toml", PRICES_TOML)))
    usage = Usage(input_tokens=5000, output_tokens=700)
    cost = pricer.price("https://llm-gateway.internal/openai/v1", "gpt-4o", None, usage, NOW_NS)
    assert (cost.source, cost.usd) == (GENAI_PRICES, genai_total(usage, "gpt-4o", "openai"))


@pytest.mark.parametrize("name", ["prices.json", "PRICES.JSON"])
def test_other_currency_is_converted_and_longest_match_wins(tmp_path, name: str) -> None:
    pricer = Pricer(load(write(tmp_path, name, json.dumps(_toml_as_dict()))))
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000)
    cny = pricer.price("http://127.0.0.1:8000/v1", "qwen-local", None, usage, NOW_NS)
    assert (cny.currency, cny.billed, cny.usd) == ("CNY", Decimal(6), Decimal(6) * Decimal("0.14"))
    team = pricer.price("http://127.0.0.1:8000/v1/team-a", "qwen-local", None, usage, NOW_NS)
    assert (team.currency, team.usd) == ("USD", Decimal("1.5"))
    assert pricer.price("http://127.0.0.1:8001/v1", "qwen-local", None, usage, NOW_NS) is None


@pytest.mark.parametrize(
    ("match", "base_url", "matches"),
    [
        ("[::1]:8000", "http://[::1]:8000/v1", True),
        ("[::1]", "http://[::1]:8000/v1", True),
        ("::1", "http://[::1]:8000/v1", True),
        ("[::1]:8000", "http://[::1]:8001/v1", False),
        ("LLM.Example.com", "https://llm.example.com/v1", True),  # hosts are not case-sensitive
        ("llm.example.com:443", "https://llm.example.com/v1", True),
        ("llm.example.com:8443", "https://llm.example.com/v1", False),
        # a URL prefix: scheme and host in any case, a default port written or not, the path as written
        ("http://localhost:8000/v1", "http://LOCALHOST:8000/v1/", True),
        ("HTTPS://GW.Example.com/team-a/v1", "https://gw.example.com/team-a/v1", True),
        ("https://gw.example.com:443/team-a/v1", "https://gw.example.com/team-a/v1", True),
        ("https://gw.example.com/team-a/v1/", "https://gw.example.com:443/team-a/v1", True),
        ("http://gw.example.com:80/v1", "http://gw.example.com/v1/chat", True),
        ("http://[::1]:8000/v1", "http://[::1]:8000/v1", True),
        ("https://gw.example.com/team-a/v1", "https://gw.example.com/Team-A/v1", False),
        ("https://gw.example.com/team-a", "https://gw.example.com/team-ab/v1", False),
        ("https://gw.example.com:8443/v1", "https://gw.example.com/v1", False),
        ("http://gw.example.com/v1", "https://gw.example.com/v1", False),
    ],
)
def test_a_match_names_a_host_and_port_in_any_form(tmp_path, match: str, base_url: str, matches: bool):
    text = f"[[providers]]\nmatch = '{match}'\n[providers.models.m]\ninput_mtok = 1\n"
    pricer = Pricer(load(write(tmp_path, "prices.toml", text)))
    cost = pricer.price(base_url, "m", None, Usage(input_tokens=2_000_000, output_tokens=0), NOW_NS)
    assert (cost.usd if cost else None) == (Decimal(2) if matches else None)


def test_the_narrowest_match_wins_however_it_is_written(tmp_path) -> None:
    """A longer path beats a prefix written longer by its port; a prefix beats host:port, which beats
    a host."""
    entries = [
        ("gw.example.com", 1),
        ("gw.example.com:443", 2),
        ("HTTPS://GW.EXAMPLE.COM:443/v1/", 3),
        ("https://gw.example.com/v1/t", 4),
    ]
    text = "".join(
        f"[[providers]]\nmatch = '{match}'\n[providers.models.m]\ninput_mtok = {rate}\n"
        for match, rate in entries
    )
    pricer = Pricer(load(write(tmp_path, "prices.toml", text)))
    usage = Usage(input_tokens=1_000_000)
    urls = {
        "https://gw.example.com:443/v1/t/": 4,
        "https://GW.example.com/v1/t": 4,
        "https://gw.example.com/v1": 3,
        "https://gw.example.com/v2": 2,
        "http://gw.example.com:443/v2": 2,
        "http://gw.example.com/v1": 1,
    }
    assert {url: pricer.price(url, "m", None, usage, NOW_NS).usd for url in urls} == urls


def test_a_base_url_is_matched_once(tmp_path, monkeypatch) -> None:
    """Matching runs once per base URL: the calls that follow are dictionary hits."""
    pricer = Pricer(load(write(tmp_path, "prices.toml", PRICES_TOML)))
    tried = []
    matches = FileProvider.matches
    monkeypatch.setattr(
        FileProvider, "matches", lambda entry, base: tried.append(entry) or matches(entry, base)
    )
    url = "https://api.holysheep.ai/v1"
    pricer.price(url, "deepseek-v3.2", None, Usage(10, 10), NOW_NS)
    first = list(tried)
    for model in ("gpt-4o", "deepseek-v3.2", "qwen-local"):
        pricer.price(url, model, None, Usage(10, 10), NOW_NS)
    assert pricer.provider_name(url) is None
    assert tried == first and first[-1].match == "api.holysheep.ai"


def _toml_as_dict() -> dict:
    import tomllib

    return tomllib.loads(PRICES_TOML)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "[[providers]]\nmatch = 'x'\n[providers.models.m]\ninput_mtok = -1\n",
            'providers[0].models."m".input_mtok',
        ),
        (
            "[[providers]]\nmatch = 'x'\n[providers.models.m]\ninput_mtok = 'a'\n",
            'providers[0].models."m".input_mtok',
        ),
        (
            "[[providers]]\nmatch = 'x'\ncurrency = 'CNY'\nprices_from = 'openai'\n",
            "providers[0].usd_per_unit",
        ),
        ("[[providers]]\nmatch = 'x'\n", "providers[0]: needs models or prices_from"),
        ("[[providers]]\nprices_from = 'openai'\n", "providers[0].match"),
        (
            "[[providers]]\nmatch = 'x'\nprices_from = 'openai'\nbogus = 1\n",
            "providers[0].bogus: unknown field",
        ),
        ("[[providers]]\nmatch = 'x'\nprices_from = 'opneai'\n", "providers[0].prices_from"),  # a typo
        ("[[providers]]\nmatch = 'gateway:http'\nprices_from = 'openai'\n", "providers[0].match"),
        ("[[providers]]\nmatch = '[::1:8000'\nprices_from = 'openai'\n", "providers[0].match"),
        (
            "[[providers]]\nmatch = 'api.holysheep.ai/v1'\nprices_from = 'openai'\n",
            "providers[0].match: expected a host, host:port or URL prefix, got 'api.holysheep.ai/v1' "
            "(a URL prefix starts with http:// or https://)",
        ),
        (
            "[[providers]]\nmatch = 'h:99999'\nprices_from = 'openai'\n",
            "providers[0].match: expected a host, host:port or URL prefix, got 'h:99999' "
            "(a port is a number from 1 to 65535)",
        ),
        ("[[providers]]\nmatch = '[::1]:99999'\nprices_from = 'openai'\n", "(a port is a number from 1 to"),
        ("[[providers]]\nmatch = 'h:0'\nprices_from = 'openai'\n", "(a port is a number from 1 to"),
        (
            "[[providers]]\nmatch = '*.openai.azure.com'\nprices_from = 'openai'\n",
            "(a host is matched whole, without wildcards: name each host)",
        ),
        ("[[providers]]\nmatch = 'gw example.com'\nprices_from = 'openai'\n", "is not a host name or an IP"),
        ("[[providers]]\nmatch = '[gw]:8000'\nprices_from = 'openai'\n", "not an IPv6 address"),
        (
            "[[providers]]\nmatch = 'http://h:99999/v1'\nprices_from = 'openai'\n",
            "(Port out of range 0-65535)",
        ),
        ("[[providers]]\nmatch = 'http://[::1/v1'\nprices_from = 'openai'\n", "(Invalid IPv6 URL)"),
        ("[[providers]]\nmatch = 'ftp://h/v1'\nprices_from = 'openai'\n", "starts with http:// or https://"),
        ("[[providers]]\nmatch = 'https:///v1'\nprices_from = 'openai'\n", "(a URL prefix names a host)"),
        (
            "[[providers]]\nmatch = 'x'\nusd_per_unit = 0.5\nprices_from = 'openai'\n",
            "providers[0].usd_per_unit: must be 1 (or left out) when currency is USD",
        ),
        (
            "[[providers]]\nmatch = 'x'\ncurrency = 'usd'\nusd_per_unit = 2\nprices_from = 'openai'\n",
            "providers[0].usd_per_unit: must be 1",
        ),
        ("providers = 3\n", "providers: expected"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_prices_file_names_each_problem(tmp_path, text: str, problem: str) -> None:
    path = write(tmp_path, "prices.toml", text)
    with pytest.raises(PricesFileError) as raised:
        load(path)
    assert str(path) in str(raised.value)
    assert any(problem in item for item in raised.value.problems), raised.value.problems


def test_a_rate_that_is_no_number_is_one_problem(tmp_path) -> None:
    path = write(
        tmp_path, "prices.toml", "[[providers]]\nmatch = 'x'\nusd_per_unit = 'a'\nprices_from = 'openai'\n"
    )
    with pytest.raises(PricesFileError) as raised:
        load(path)
    (problem,) = [item for item in raised.value.problems if "usd_per_unit" in item]
    assert "must be 1" not in problem


@given(units=st.integers(0, 10**28 - 1), exponent=st.integers(-40, 5))
def test_a_cost_is_exact_and_as_a_float_rounded_once(units: int, exponent: int) -> None:
    cost = Cost(units, exponent, PRICES_FILE, "USD", "p")
    assert cost.usd == Decimal(units).scaleb(exponent)
    _, digits, decimal_exponent = cost.usd.as_tuple()
    assert decimal_exponent >= 0 or digits[-1] != 0  # 0.0000318, not 0.00003180
    assert cost.amount == float(Decimal(units).scaleb(exponent))


@given(stated=st.floats(min_value=0, max_value=1e9))
def test_a_stated_cost_keeps_its_value(stated: float) -> None:
    usd = Decimal(repr(stated))  # as a provider's usage or header states it
    cost = Cost.stated(usd, PROVIDER, "openrouter")
    assert (cost.usd, cost.billed, cost.amount, cost.currency) == (usd, usd, stated, "USD")


def test_costs_of_one_value_are_equal_whatever_their_scale() -> None:
    """0.0000318 USD kept as 318e-7 or as 3180e-8 is one cost: equal, one hash, shown without the zero."""
    coarse, fine = Cost(318, -7, PRICES_FILE, "USD", "p"), Cost(3180, -8, PRICES_FILE, "USD", "p")
    assert coarse == fine and hash(coarse) == hash(fine)
    assert coarse != Cost(319, -7, PRICES_FILE, "USD", "p")
    assert repr(fine) == (
        "Cost(usd=Decimal('0.0000318'), source='prices-file', billed=Decimal('0.0000318'), "
        "currency='USD', provider='p')"
    )
