"""What the instrumentors instrument, for `opentelemetry-instrument`'s dependency check."""

_instruments_openai = ("openai >= 1.40",)
_instruments_requests = ("requests >= 2.28",)
_supports_metrics = True
