"""The counted benchmark (instructions under callgrind) passes its guards and reports every case."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_benchmark
from prometheus_server import require_tool

WITH_FLOOR = ("in-process chat", "in-process embeddings", "requests wrapper alone, chat")
CASES = (
    *WITH_FLOOR,
    "in-process stream, 50 words",
    "stream hook alone, 53 chunks",
    "stream hook alone, 503 chunks",
    "requests wrapper alone, non-LLM",
    "in-process chat, no-op providers",
)


def test_counted_benchmark_passes_its_guards(tmp_path: Path) -> None:
    require_tool("valgrind", "valgrind")
    require_tool("callgrind_control", "valgrind")
    data, printed = run_benchmark("counts.py", tmp_path / "counts.json", timeout=1200)

    hot = data["hot_floor"]
    assert hot["ir"] > 0 and hot["cycles"] > hot["ir"]  # misses and mispredictions cost on top
    cases = data["cases"]
    assert set(CASES) <= set(cases)
    for name in CASES:
        case = cases[name]
        assert case["bare"]["ir"] > 0 and case["added"]["ir"] > 0, name
        assert case["added_x_hot_floor_ir"] == case["added"]["ir"] / hot["ir"], name
    for name in WITH_FLOOR:
        case = cases[name]
        assert case["floor_in_place"]["ir"] > 0, name
        assert case["added_x_floor_ir"] == case["added"]["ir"] / case["floor_in_place"]["ir"], name
    # A stream's chunks are counted through the proxy alone: 450 more chunks in the longer stream.
    stream = data["streams"]
    short, long = cases["stream hook alone, 53 chunks"], cases["stream hook alone, 503 chunks"]
    assert stream["per_chunk"]["ir"] == pytest.approx((long["added"]["ir"] - short["added"]["ir"]) / 450)
    assert 0 < stream["per_chunk"]["ir"] < stream["per_stream"]["ir"]
    assert data["guards"] and all(guard["ok"] for guard in data["guards"])
    assert "counts per call under callgrind" in printed
