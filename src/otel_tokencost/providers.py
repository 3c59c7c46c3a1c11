"""Who serves a base URL: the `gen_ai.provider.name` and server attributes, worked out once per URL."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

OPENAI_HOST = "api.openai.com"
# Host suffix -> gen_ai.provider.name (semantic-convention values where they exist).
KNOWN_HOSTS = (
    (OPENAI_HOST, "openai"),
    ("openai.azure.com", "azure.ai.openai"),
    ("cognitiveservices.azure.com", "azure.ai.openai"),
    ("services.ai.azure.com", "azure.ai.inference"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    ("api.anthropic.com", "anthropic"),
    ("api.deepseek.com", "deepseek"),
    ("api.groq.com", "groq"),
    ("api.mistral.ai", "mistral_ai"),
    ("codestral.mistral.ai", "mistral_ai"),
    ("api.x.ai", "x_ai"),
    ("api.perplexity.ai", "perplexity"),
    ("api.cohere.ai", "cohere"),
    ("api.cohere.com", "cohere"),
    ("openrouter.ai", "openrouter"),
    ("api.together.xyz", "together_ai"),
    ("api.together.ai", "together_ai"),
    ("api.fireworks.ai", "fireworks"),
)
# Hosts with a region in their name -> gen_ai.provider.name.
KNOWN_HOST_PATTERNS = (
    (re.compile(r"([a-z0-9-]+\.)*[a-z0-9]+(-[a-z0-9]+)*-aiplatform\.googleapis\.com"), "gcp.vertex_ai"),
    (re.compile(r"bedrock-runtime(-fips)?\.[a-z0-9-]+\.amazonaws\.com"), "aws.bedrock"),
)
UNKNOWN_COMPATIBLE = "openai"
# Azure OpenAI takes `stream_options` from this API version on (and in its v1 API, which has none).
AZURE_STREAM_OPTIONS_SINCE = "2024-09-01"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A client's base URL and what it tells: provider name, server address and port, and whether
    the host is a provider's own API (rather than a gateway or a self-hosted server)."""

    base_url: str
    provider: str
    address: str
    port: int
    known_provider: bool = False
    is_openai: bool = False  # OpenAI's own API (which has span attributes of its own), any region's


@lru_cache(maxsize=256)
def endpoint_for(base_url: str, provider: str | None = None) -> Endpoint:
    """Describe a base URL (`provider` names it when a prices file does); cached per URL."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = 443 if parts.scheme == "https" else 80
    known = next(
        (name for suffix, name in KNOWN_HOSTS if host == suffix or host.endswith("." + suffix)), None
    ) or next((name for pattern, name in KNOWN_HOST_PATTERNS if pattern.fullmatch(host)), None)
    return Endpoint(
        base_url=_without_credentials(base_url, parts),
        provider=provider or known or UNKNOWN_COMPATIBLE,
        address=host,
        port=port,
        known_provider=known is not None,
        is_openai=host == OPENAI_HOST or host.endswith("." + OPENAI_HOST),  # eu.api.openai.com, ...
    )


def _without_credentials(base_url: str, parts) -> str:
    if parts.username is None and parts.password is None and not parts.query:
        return base_url
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc, query="", fragment="").geturl()


# Providers whose streams report their usage unasked: asking would only change what the app reads (an
# extra chunk, or `usage: null` in every chunk). Mistral also refuses the request (422).
REPORTS_STREAM_USAGE_UNASKED = frozenset(
    {"deepseek", "fireworks", "groq", "mistral_ai", "openrouter", "perplexity", "together_ai"}
)


def asks_for_stream_usage(endpoint: Endpoint, api_version: str | None) -> bool:
    """Whether to ask a stream request for its usage (`stream_options`): not of a provider's own API that
    reports it unasked (a server a prices file names after one streams as that server does), nor of one
    that refuses the whole request for it."""
    provider = endpoint.provider
    if endpoint.known_provider and provider in REPORTS_STREAM_USAGE_UNASKED:
        return False
    if provider == "azure.ai.openai" and api_version.__class__ is str:
        return api_version >= AZURE_STREAM_OPTIONS_SINCE  # earlier versions: 400 "Unrecognized argument"
    return True
