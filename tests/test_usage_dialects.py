"""Each provider's usage dialect, read field by field (the whole bodies are in test_providers.py)."""

from __future__ import annotations

import decimal
from decimal import Decimal

import pytest

from otel_tokencost.operations import RESPONSES, Outcome, parse_usage, usage_cost
from otel_tokencost.pricing import Usage


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # OpenAI: cached and reasoning tokens are subsets of the totals.
        (
            {
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "total_tokens": 150,
                "prompt_tokens_details": {"cached_tokens": 60},
                "completion_tokens_details": {"reasoning_tokens": 20},
            },
            Usage(100, 50, cache_read_tokens=60, reasoning_tokens=20),
        ),
        # DeepSeek before it copied the hit count into prompt_tokens_details.
        (
            {
                "prompt_tokens": 1000,
                "completion_tokens": 10,
                "prompt_cache_hit_tokens": 800,
                "prompt_cache_miss_tokens": 200,
            },
            Usage(1000, 10, cache_read_tokens=800),
        ),
        # Databricks, and gateways passing Anthropic's usage through: Anthropic's names for cache reads
        # and writes, subsets of prompt_tokens.
        (
            {
                "prompt_tokens": 100_000,
                "completion_tokens": 20,
                "cache_read_input_tokens": 90_000,
                "cache_creation_input_tokens": 5_000,
            },
            Usage(100_000, 20, cache_read_tokens=90_000, cache_write_tokens=5_000),
        ),
        # Gemini and xAI: reasoning outside completion_tokens, as total_tokens shows.
        (
            {
                "prompt_tokens": 2410,
                "completion_tokens": 318,
                "total_tokens": 3173,
                "completion_tokens_details": {"reasoning_tokens": 445},
            },
            Usage(2410, 763, reasoning_tokens=445),
        ),
        # Together: cached tokens at the top level.
        (
            {"prompt_tokens": 500, "completion_tokens": 5, "cached_tokens": 300},
            Usage(500, 5, cache_read_tokens=300),
        ),
        # OpenRouter (Anthropic upstream): cache writes beside cache reads.
        (
            {
                "prompt_tokens": 3340,
                "completion_tokens": 57,
                "prompt_tokens_details": {"cached_tokens": 3211, "cache_write_tokens": 121},
            },
            Usage(3340, 57, 3211, 121),
        ),
        # Responses API.
        (
            {
                "input_tokens": 3200,
                "output_tokens": 586,
                "input_tokens_details": {"cached_tokens": 2048},
                "output_tokens_details": {"reasoning_tokens": 448},
            },
            Usage(3200, 586, 2048, 0, 448),
        ),
        # OpenAI audio models: audio in and out, subsets of the totals.
        (
            {
                "prompt_tokens": 120,
                "completion_tokens": 330,
                "total_tokens": 450,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 80},
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 300,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            Usage(120, 330, input_audio_tokens=80, output_audio_tokens=300),
        ),
        # Subsets larger than their totals are clamped.
        (
            {"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 50}},
            Usage(10, 1, cache_read_tokens=10),
        ),
        (
            {
                "prompt_tokens": 100,
                "completion_tokens": 10,
                "prompt_tokens_details": {"cached_tokens": 70, "audio_tokens": 50},
                "completion_tokens_details": {"audio_tokens": 20},
            },
            Usage(100, 10, cache_read_tokens=70, input_audio_tokens=30, output_audio_tokens=10),
        ),
    ],
    ids=[
        "openai",
        "deepseek-hit-miss",
        "anthropic-names",
        "gemini-reasoning-apart",
        "together",
        "openrouter-cache-write",
        "responses",
        "openai-audio",
        "clamped",
        "clamped-audio",
    ],
)
def test_usage_dialects(raw: dict, expected: Usage) -> None:
    assert parse_usage(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"cost": 0.00229605}, Decimal("0.00229605")),
        (
            {"cost": 0.0001, "is_byok": True, "cost_details": {"upstream_inference_cost": 0.002}},
            Decimal("0.0021"),
        ),
        ({"cost_in_usd_ticks": 3772000}, Decimal("0.0003772")),
        ({"cost": "0.5"}, Decimal("0.5")),
        ({"cost": -1}, None),
        ({"cost": True}, None),
        ({"prompt_tokens": 1}, None),
        (
            {
                "cost": {
                    "input_tokens_cost": 0.000966,
                    "output_tokens_cost": 0.01221,
                    "request_cost": 0.006,
                    "citation_tokens_cost": None,
                    "total_cost": 0.019176,
                }
            },
            Decimal("0.019176"),
        ),
        (
            {
                "cost": {
                    "currency": "USD",
                    "input_cost": 0.0046,
                    "tool_calls_cost": 0.005,
                    "total_cost": 0.0096,
                }
            },
            Decimal("0.0096"),
        ),
        ({"cost": {"currency": "EUR", "total_cost": 0.0174}}, None),
        ({"cost": {"input_tokens_cost": 0.1, "total_cost": None}}, None),
        ({"cost": {"total_cost": "n/a"}}, None),
        ({"cost": [0.5]}, None),
    ],
    ids=[
        "openrouter",
        "openrouter-byok",
        "xai-ticks",
        "string",
        "negative",
        "bool",
        "none",
        "perplexity-sonar-breakdown",
        "perplexity-agent-breakdown",
        "breakdown-in-another-currency",
        "breakdown-without-total",
        "breakdown-garbled-total",
        "list",
    ],
)
def test_costs_providers_state(raw: dict, expected: Decimal | None) -> None:
    assert usage_cost(raw) == expected
    with decimal.localcontext() as context:  # the app's: neither rounds nor raises
        context.prec = 1
        context.traps[decimal.Inexact] = True
        assert usage_cost(raw) == expected


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"input_tokens": 1000, "output_tokens": 200}, Usage(1000, 200, web_searches=3)),
        ({"input_tokens": -1, "output_tokens": 200}, None),  # voided: no tokens beat a wrong cost
        (None, None),
    ],
    ids=["searched", "unusable-usage", "no-usage"],
)
def test_web_searches_go_with_usable_token_counts(usage: dict | None, expected: Usage | None) -> None:
    outcome = Outcome()
    body = {"status": "completed", "usage": usage, "tool_usage": {"web_search": {"num_requests": 3}}}
    RESPONSES.read(outcome, body)
    assert outcome.usage == expected
