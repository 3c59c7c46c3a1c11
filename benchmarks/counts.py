"""What otel_tokencost adds to a call, counted rather than timed: instructions, cache misses and
mispredicted branches, under valgrind's callgrind.

    python benchmarks/counts.py [--quick] [--json PATH] [--check]

Timings on a shared machine move by 10-30% from run to run (bench.py); counts do not. Each case's calls
run in phases, in one process under callgrind: bare, bare followed by the floor (the OpenTelemetry SDK's
own work for one span and four histogram records, bench.py's floor), and instrumented; the floor also
runs alone ("hot"). Each variant runs twice, in mirrored order (bare, floor, instrumented, instrumented,
floor, bare), so that drift along the run cancels out. Each phase follows warm-up calls and a
gc.collect(), the collector is paused during it (where its passes fall is not the package's cost), and
its counts are dumped apart from everything else (callgrind dumps at each `os.getppid()`, which nothing
else here calls). Span ids come from a seeded generator, so two runs count the same.

Per call: instructions (Ir), and a cycle estimate, KCachegrind's: Ir + 10 x (L1 misses + mispredicted
branches) + 100 x last-level misses. The caches simulated are a current server core's, whatever the
host: L1 of 32 KB for instructions and 48 KB for data, and a 2 MB L2 as the last level. "added" is
instrumented minus bare, "floor in place" bare-then-floor minus bare, "x floor" their ratio and "x hot"
added over the floor alone. A stream's chunks are counted through the proxy alone, on an SDK stream of
parsed chunks (53, and 503 with ten times the words: "per chunk" is the difference over the 450 extra
chunks), since the SDK's own work on a chunk (~800,000 instructions here) moves by more than the proxy's
from one phase to the next; "per stream besides" is what the in-process stream adds less 53 chunks.

Needs valgrind (`apt-get install valgrind`). --check exits 1 when a regression guard fails: counts do not
vary from run to run, so the guards sit about a third above what the package costs today.
"""

from __future__ import annotations

import argparse
import gc
import json
import operator
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import Any

import bench

# Simulated as a current server core's: L1 32 KB instructions and 48 KB data, L2 2 MB (the last level).
CACHES = ("--I1=32768,8,64", "--D1=49152,12,64", "--LL=2097152,16,64")
L1_MISS_CYCLES, LL_MISS_CYCLES, MISPREDICT_CYCLES = 10, 100, 10  # KCachegrind's cycle estimate
STREAM = f"in-process stream, {bench.CONTENT_CHUNKS} words"  # and role, finish and usage chunks
# The stream's parsed chunks, and with ten times its words (bench.parsed_streams), through the proxy
# alone: per chunk.
LONG_STREAM_CHUNKS = bench.STREAM_CHUNKS + 9 * bench.CONTENT_CHUNKS
HOOK_SHORT = f"stream hook alone, {bench.STREAM_CHUNKS} chunks"
HOOK_LONG = f"stream hook alone, {LONG_STREAM_CHUNKS} chunks"

# Regression guards (--check): counts are exact, so these catch a 30% regression, not a tenfold one.
GUARD_X_FLOOR = 1.4  # instructions added per call over the floor's in place (0.91-1.20 today)
GUARD_OWN_X_FLOOR = 0.2  # the package's own code (no-op providers) over the floor in place (0.15)
GUARD_CHUNK_IR = 6_000  # instructions added per stream chunk, the usage asked by the package (4,800)
GUARD_NON_LLM_IR = 30_000  # instructions added to a `requests` call to any other URL (13,000-21,000)


@dataclass
class Counts:
    """One phase's counts per call."""

    ir: float
    l1_misses: float
    ll_misses: float
    mispredicts: float

    @property
    def cycles(self) -> float:
        return (
            self.ir
            + L1_MISS_CYCLES * self.l1_misses
            + MISPREDICT_CYCLES * self.mispredicts
            + LL_MISS_CYCLES * self.ll_misses
        )

    def __add__(self, other: Counts) -> Counts:
        return Counts(*map(operator.add, astuple(self), astuple(other)))

    def __sub__(self, other: Counts) -> Counts:
        return Counts(*map(operator.sub, astuple(self), astuple(other)))

    def __mul__(self, factor: float) -> Counts:
        return Counts(*(value * factor for value in astuple(self)))

    def __truediv__(self, divisor: float) -> Counts:
        return Counts(*(value / divisor for value in astuple(self)))

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "cycles": self.cycles}


def read_dump(path: Path, calls: int) -> Counts:
    """A callgrind dump's totals, per call."""
    events = totals = None
    for line in path.read_text().splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("summary:") or line.startswith("totals:"):
            totals = [int(value) for value in line.split()[1:]]
    if events is None or totals is None:
        raise RuntimeError(f"{path} holds no totals")
    count = dict(zip(events, totals, strict=True))
    return (
        Counts(
            count["Ir"],
            count["I1mr"] + count["D1mr"] + count["D1mw"],
            count["ILmr"] + count["DLmr"] + count["DLmw"],
            count["Bcm"] + count["Bim"],
        )
        / calls
    )


# ---------------------------------------------------------------------------------------------
# Inside callgrind: the phases


@dataclass
class Case(bench.Case):
    with_floor: bool = False  # also count the bare call followed by the floor

    @property
    def phases(self) -> tuple[str, ...]:
        """Each variant twice, in mirrored order: drift along the run cancels out of the differences."""
        variants = ("bare", "place", "on") if self.with_floor else ("bare", "on")
        return variants + variants[::-1]


def build_cases(steps: list) -> list[Case]:
    """The cases; a stream call appends its chunks' timings to `steps`."""
    from otel_tokencost.telemetry import Telemetry

    client = bench.in_process_client()
    in_process = bench.openai_calls(client, steps)
    proxy_of = bench.stream_proxy_of(Telemetry.from_config(bench.tracer_provider, bench.meter_provider))

    def stream_hook(name: str, chunks: list) -> Case:
        """An SDK stream of parsed chunks, bare or through the proxy the patch returns for it."""
        bare, proxied = bench.stream_hook(chunks, None), bench.stream_hook(chunks, proxy_of)
        current = [bare]
        return Case(
            name,
            lambda: current[0](),
            lambda: current.__setitem__(0, proxied),
            lambda: current.__setitem__(0, bare),
        )

    short, long = bench.parsed_streams(client)
    session = bench.StubSession()
    headers = {"Authorization": f"Bearer {bench.API_KEY}"}
    chat_body = {"model": bench.MODEL, "messages": bench.MESSAGES}
    files_body = {"purpose": "batch"}  # one object: the session prepares each (URL, body) once

    def requests_chat() -> None:
        session.post(f"{bench.STUB_BASE_URL}/chat/completions", json=chat_body, headers=headers)

    def requests_other() -> None:
        session.post(f"{bench.STUB_BASE_URL}/files", json=files_body, headers=headers)

    on, off = bench.tokencost_on, bench.tokencost_off
    cases = [
        Case("in-process chat", in_process["chat"], on, off, with_floor=True),
        Case("in-process embeddings", in_process["embeddings"], on, off, with_floor=True),
        Case(STREAM, in_process["stream"], on, off),
        stream_hook(HOOK_SHORT, short),
        stream_hook(HOOK_LONG, long),
        Case("requests wrapper alone, chat", requests_chat, on, off, with_floor=True),
        Case("requests wrapper alone, non-LLM", requests_other, on, off),
        Case("in-process chat, no-op providers", in_process["chat"], bench.own_code_on, off),
    ]
    instrumentor, _reason = bench.openai_v2()
    if instrumentor is not None:

        def v2_on() -> None:
            instrumentor().instrument(
                tracer_provider=bench.tracer_provider,
                meter_provider=bench.meter_provider,
                skip_dep_check=True,
            )

        def v2_off() -> None:
            instrumentor().uninstrument()

        cases += [
            Case("openai-v2: in-process chat", in_process["chat"], v2_on, v2_off),
            Case(f"openai-v2: {STREAM}", in_process["stream"], v2_on, v2_off),
        ]
    return cases


def count_phases(out_dir: Path, calls: int, only: str | None) -> None:
    """Run the cases' phases with callgrind counting, and write which dump holds which phase."""
    bench.write_prices()
    steps = bench.Steps()
    cases = [case for case in build_cases(steps) if only is None or only in case.name]
    floor = bench._floor_call()
    for case in cases:  # everything loaded and priced once, before counting starts
        case.on()
        case.call()
        case.off()
        case.call()
    floor()
    random.seed(0)  # span and trace ids: the same from run to run
    subprocess.run(["callgrind_control", "--instr=on", str(os.getpid())], check=True, capture_output=True)
    dumps = 0
    phases: list[dict[str, Any]] = []

    def phase(name: str, variant: str, call: Callable[[], None], calls: int) -> None:
        nonlocal dumps
        for _ in range(1 if "stream" in name else 3):
            call()
        steps.clear()
        gc.collect()
        gc.disable()  # where the collector's passes would fall is not the package's cost
        os.getppid()  # callgrind dumps before each getppid: what came before is not counted
        for _ in range(calls):
            call()
        os.getppid()
        gc.enable()
        dumps += 2
        phases.append({"case": name, "variant": variant, "calls": calls, "dump": dumps})

    phase("floor", "hot", floor, calls)
    for case in cases:
        n = max(calls // 4, 2) if "stream" in case.name else calls
        for variant in case.phases:
            if variant == "on":
                case.on()
                phase(case.name, variant, case.call, n)
                case.off()
            elif variant == "place":

                def bare_then_floor(call: Callable[[], None] = case.call) -> None:
                    call()
                    floor()

                phase(case.name, variant, bare_then_floor, n)
            else:
                phase(case.name, variant, case.call, n)
    (out_dir / "phases.json").write_text(json.dumps(phases))


# ---------------------------------------------------------------------------------------------
# Outside: run callgrind, read its dumps, report


def run_callgrind(
    calls: int, only: str | None, keep: str | None
) -> tuple[dict[str, dict[str, Counts]], float]:
    """Count the phases under callgrind; per case, each variant's counts per call (its phases' mean)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None or shutil.which("callgrind_control") is None:
        raise SystemExit("counts.py needs valgrind and callgrind_control: apt-get install valgrind")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="otel-tokencost-counts-") as tmp:
        out_dir = Path(tmp)
        command = [
            valgrind,
            "--tool=callgrind",
            "--instr-atstart=no",  # imports and set-up run uncounted, at a fraction of the cost
            "--cache-sim=yes",
            "--branch-sim=yes",
            *CACHES,
            "--dump-before=getppid",
            f"--callgrind-out-file={out_dir / 'callgrind.out'}",
            sys.executable,
            __file__,
            "--inside",
            str(out_dir),
            "--calls",
            str(calls),
            *(("--only", only) if only else ()),
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(
                f"callgrind run failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )
        if keep:
            shutil.copytree(out_dir, keep, dirs_exist_ok=True)
        phases = json.loads((out_dir / "phases.json").read_text())
        counted: dict[str, dict[str, list[Counts]]] = {}
        for phase in phases:
            dump = read_dump(out_dir / f"callgrind.out.{phase['dump']}", phase["calls"])
            counted.setdefault(phase["case"], {}).setdefault(phase["variant"], []).append(dump)
    counts = {
        case: {variant: sum(runs[1:], runs[0]) / len(runs) for variant, runs in variants.items()}
        for case, variants in counted.items()
    }
    return counts, time.perf_counter() - started


@dataclass
class Row:
    """One case: its bare call, what the package adds, and the floor in place when it was counted."""

    name: str
    bare: Counts
    added: Counts
    floor_in_place: Counts | None
    hot_floor: Counts

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "bare": self.bare.as_dict(),
            "added": self.added.as_dict(),
            "added_x_hot_floor_ir": self.added.ir / self.hot_floor.ir,
            "added_x_hot_floor_cycles": self.added.cycles / self.hot_floor.cycles,
        }
        if self.floor_in_place is not None:
            row["floor_in_place"] = self.floor_in_place.as_dict()
            row["added_x_floor_ir"] = self.added.ir / self.floor_in_place.ir
            row["added_x_floor_cycles"] = self.added.cycles / self.floor_in_place.cycles
        return row


def rows(counts: dict[str, dict[str, Counts]]) -> list[Row]:
    hot = counts["floor"]["hot"]
    found = []
    for name, phases in counts.items():
        if name != "floor":
            bare = phases["bare"]
            place = phases.get("place")
            found.append(Row(name, bare, phases["on"] - bare, place - bare if place else None, hot))
    return found


def stream_split(by_name: dict[str, Row]) -> tuple[Counts, Counts]:
    """What a stream adds per chunk (the proxy alone: the longer stream over the shorter), and per
    stream besides (the call's start and end, the proxy and its generator)."""
    short, long = by_name[HOOK_SHORT], by_name[HOOK_LONG]
    chunk = (long.added - short.added) / (LONG_STREAM_CHUNKS - bench.STREAM_CHUNKS)
    return chunk, by_name[STREAM].added - chunk * bench.STREAM_CHUNKS


def table(found: list[Row]) -> str:
    """Markdown: per call, instructions and the cycle estimate, with their ratios to the floors."""

    def ratios(added: float, floor: float | None, hot: float) -> str:
        in_place = f"{added / floor:.2f}" if floor else ""
        return f"{in_place} | {added / hot:.2f}"

    hot = found[0].hot_floor
    lines = [
        "| case | bare Ir | added Ir | floor in place Ir | x floor | x hot "
        "| added cycles | x floor | x hot |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| floor alone (hot): SDK span + 4 records | | {hot.ir:,.0f} | | | 1.00 "
        f"| {hot.cycles:,.0f} | | 1.00 |",
    ]
    for row in found:
        floor = row.floor_in_place
        floor_ir = f"{floor.ir:,.0f}" if floor else ""
        lines.append(
            f"| {row.name} | {row.bare.ir:,.0f} | {row.added.ir:,.0f} | {floor_ir} "
            f"| {ratios(row.added.ir, floor and floor.ir, hot.ir)} | {row.added.cycles:,.0f} "
            f"| {ratios(row.added.cycles, floor and floor.cycles, hot.cycles)} |"
        )
    return "\n".join(lines)


def guards(by_name: dict[str, Row], chunk: Counts) -> list[bench.Guard]:
    """bench.py's guards, on counts."""
    checks = [
        bench.Guard(
            f"{name}: x floor in place (Ir)",
            by_name[name].added.ir / by_name[name].floor_in_place.ir,
            GUARD_X_FLOOR,
        )
        for name in ("in-process chat", "in-process embeddings", "requests wrapper alone, chat")
    ]
    own = by_name["in-process chat, no-op providers"].added.ir
    checks += [
        bench.Guard(
            "own code: x floor in place (Ir)",
            own / by_name["in-process chat"].floor_in_place.ir,
            GUARD_OWN_X_FLOOR,
        ),
        bench.Guard("Ir per stream chunk", chunk.ir, GUARD_CHUNK_IR),
        bench.Guard(
            "Ir per requests call to another URL",
            by_name["requests wrapper alone, non-LLM"].added.ir,
            GUARD_NON_LLM_IR,
        ),
    ]
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = bench.benchmark_parser(__doc__, "fewer calls per phase (CI)")
    parser.add_argument("--only", metavar="TEXT", help="count only the cases whose name contains TEXT")
    parser.add_argument("--keep", metavar="DIR", help="keep callgrind's dumps in DIR (callgrind_annotate)")
    parser.add_argument("--inside", metavar="DIR", help=argparse.SUPPRESS)  # the run under callgrind
    parser.add_argument("--calls", type=int, default=30, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.inside:
        count_phases(Path(options.inside), options.calls, options.only)
        return 0
    if options.only and options.check:
        parser.error("--check needs every case: leave out --only")

    info = bench.machine()
    counts, seconds = run_callgrind(8 if options.quick else 24, options.only, options.keep)
    found = rows(counts)
    if not found:
        parser.error(f"no case's name contains {options.only!r}")
    by_name = {row.name: row for row in found}
    hot_floor = counts["floor"]["hot"]
    print(
        f"counts per call under callgrind: Python {info['python']}, openai {info['openai']}, "
        f"opentelemetry-sdk {info['opentelemetry_sdk']}, otel_tokencost {info['otel_tokencost']}"
    )
    print(table(found))
    streams = {}
    if {STREAM, HOOK_SHORT, HOOK_LONG} <= set(by_name):
        chunk, per_stream = stream_split(by_name)
        streams = {"per_chunk": chunk.as_dict(), "per_stream": per_stream.as_dict()}
        print(
            f"stream: {chunk.ir:,.0f} Ir ({chunk.cycles:,.0f} cycles) per chunk, "
            f"{per_stream.ir:,.0f} Ir ({per_stream.cycles:,.0f} cycles) per stream besides"
        )
    checks = [] if options.only else guards(by_name, stream_split(by_name)[0])
    if checks:
        bench.print_guards(checks)
    else:
        print("no guards checked (--only)")
    print(f"{'quick' if options.quick else 'full'} run: {seconds:.0f} s")
    document = {
        "machine": info,
        "quick": options.quick,
        "hot_floor": hot_floor.as_dict(),
        "cases": {row.name: row.as_dict() for row in found},
        "streams": streams,
        "seconds": round(seconds, 1),
    }
    return bench.conclude(document, checks, options.json, options.check)


if __name__ == "__main__":
    sys.exit(main())
