"""The `otel-tokencost` command line: demo, price, check-prices and report."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from .tables import money, render

if TYPE_CHECKING:
    from .pricing import Pricer


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number of tokens, 0 or more, got {text!r}")
    return value


def _unix_time(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a Unix time in seconds, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-tokencost", description="What your LLM calls cost.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("demo", help="sample traffic against a local server, then the cost report")

    price = commands.add_parser("price", help="the cost of a given usage for several models, side by side")
    price.add_argument("models", nargs="+", metavar="MODEL")
    price.add_argument("--input", type=_count, required=True, help="input tokens (cached ones included)")
    price.add_argument("--output", type=_count, required=True, help="output tokens")
    price.add_argument("--cached", type=_count, default=0, help="input tokens read from the provider's cache")
    price.add_argument("--input-audio", type=_count, default=0, help="input audio tokens (not cached ones)")
    price.add_argument("--output-audio", type=_count, default=0, help="output audio tokens")
    price.add_argument("--web-searches", type=_count, default=0, help="web searches of a hosted tool")
    price.add_argument("--base-url", default="", help="the client's base URL (picks the provider's prices)")
    price.add_argument("--prices", help="a prices file (TOML or JSON)")
    price.add_argument("--json", action="store_true", help="a JSON list instead of a table")

    check = commands.add_parser("check-prices", help="validate a prices file")
    check.add_argument("file")

    report = commands.add_parser("report", help="spend, tokens, calls and p95 latency from Prometheus")
    report.add_argument("--prometheus", required=True, metavar="URL", help="e.g. http://localhost:9090")
    report.add_argument(
        "--since", default="30d", help="window, a Prometheus duration such as 24h, 1h30m or 30d (default)"
    )
    report.add_argument(
        "--by",
        default="model",
        help="comma-separated: model, tracking_id, provider, service, operation (default: model)",
    )
    report.add_argument("--at", type=_unix_time, help="evaluate at this Unix time instead of now")
    report.add_argument(
        "--json",
        action="store_true",
        help="a JSON list instead of a table (a p95 past the last bucket: p95_seconds null, "
        "p95_above_seconds the bucket's bound)",
    )
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run

        return run(out)
    if args.command == "price":
        return price(args, out, err)
    if args.command == "check-prices":
        return check_prices(args.file, out, err)
    from .prometheus_report import run_report

    return run_report(args, out, err)


def _url_problem(url: str) -> str | None:
    """What makes `url` unusable as a base URL (a port out of range, an unclosed IPv6 bracket), or None."""
    from .pricing.prices_file import address

    try:
        address(url)
    except ValueError as error:
        return str(error)
    return None


def _span_provider(pricer: Pricer, base_url: str) -> str | None:
    """The gen_ai.provider.name a call to `base_url` gets (the prices file's `provider` included), or
    None without a base URL."""
    from .providers import endpoint_for

    return endpoint_for(base_url, pricer.provider_name(base_url)).provider if base_url else None


def price(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print the cost of one usage for each model; exit 1 when a model has no price. The provider shown
    is the one a call to --base-url records, else the one genai-prices finds for the model's name."""
    from .pricing import Pricer, PricesFileError, Usage, load

    problem = _url_problem(args.base_url)
    if problem:
        print(f"otel-tokencost price: --base-url {args.base_url}: {problem}", file=err)
        return 2
    if args.cached + args.input_audio > args.input:
        print("otel-tokencost price: --cached and --input-audio cannot exceed --input", file=err)
        return 2
    if args.output_audio > args.output:
        print("otel-tokencost price: --output-audio cannot exceed --output", file=err)
        return 2
    try:
        pricer = Pricer(load(args.prices) if args.prices else ())
    except PricesFileError as error:
        print(f"otel-tokencost price: {error}", file=err)
        return 2
    usage = Usage(
        input_tokens=args.input,
        output_tokens=args.output,
        cache_read_tokens=args.cached,
        input_audio_tokens=args.input_audio,
        output_audio_tokens=args.output_audio,
        web_searches=args.web_searches,
    )
    span_provider = _span_provider(pricer, args.base_url)
    results = []
    for model in args.models:
        cost = pricer.price(args.base_url, model, None, usage, time.time_ns())
        results.append(
            {
                "model": model,
                "provider": span_provider or (cost.provider if cost else None),
                "currency": "USD",
                "cost": float(cost.usd) if cost else None,
                "source": cost.source if cost else None,
                "_exact": cost.usd if cost else None,
            }
        )
    if args.json:
        print(
            json.dumps([{k: v for k, v in row.items() if k != "_exact"} for row in results], indent=2),
            file=out,
        )
    else:
        rows = [
            [r["model"], r["provider"] or "-", money(r["_exact"]), r["source"] or "no price known"]
            for r in results
        ]
        print(render(("model", "provider", "cost (USD)", "source"), rows), file=out)
    unpriced = [r["model"] for r in results if r["cost"] is None]
    if unpriced:
        print(f"otel-tokencost price: no price known for {', '.join(unpriced)}", file=err)
        return 1
    return 0


def check_prices(path: str, out: TextIO, err: TextIO) -> int:
    """Validate a prices file: exit 0, or 1 with each problem and where it is."""
    from .pricing import PricesFileError, load

    try:
        providers = load(path)
    except PricesFileError as error:
        for problem in error.problems:
            print(f"{path}: {problem}", file=err)
        print(f"{path}: {len(error.problems)} problem(s)", file=err)
        return 1
    models = sum(len(provider.models) for provider in providers)
    print(f"{path}: OK ({len(providers)} providers, {models} models)", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
