"""The four histograms, created once per meter with the contract's units and bucket boundaries."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.metrics import Histogram, Meter

from . import names

TOKEN_BUCKETS = [4.0**power for power in range(14)]  # 1, 4, 16, ... 67108864
DURATION_BUCKETS = [0.01 * 2.0**power for power in range(14)]  # 0.01, 0.02, ... 81.92
COST_BUCKETS = [1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0]


@dataclass(frozen=True, slots=True)
class Instruments:
    token_usage: Histogram
    duration: Histogram
    time_to_first_chunk: Histogram
    cost: Histogram

    @classmethod
    def create(cls, meter: Meter) -> Instruments:
        return cls(
            token_usage=meter.create_histogram(
                names.METRIC_TOKEN_USAGE,
                unit="{token}",
                description="Number of input and output tokens used",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            ),
            duration=meter.create_histogram(
                names.METRIC_DURATION,
                unit="s",
                description="GenAI operation duration",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            ),
            time_to_first_chunk=meter.create_histogram(
                names.METRIC_TIME_TO_FIRST_CHUNK,
                unit="s",
                description="Time from the request to the first chunk of a streamed response",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            ),
            cost=meter.create_histogram(
                names.METRIC_COST,
                unit="USD",
                description="Cost of GenAI operations in US dollars",
                explicit_bucket_boundaries_advisory=COST_BUCKETS,
            ),
        )
