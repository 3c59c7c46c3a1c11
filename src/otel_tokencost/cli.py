"""The `otel-tokencost` command line."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="otel-tokencost", description="What your LLM calls cost.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run sample traffic against a local server and print the cost report")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run

        return run()
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
