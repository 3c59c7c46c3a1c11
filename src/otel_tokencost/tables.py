"""Plain-text tables for the command line and the console reports."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

MICRO_DOLLAR = Decimal("0.000001")


def money(amount: Decimal | float | None) -> str:
    """A USD amount to the micro-dollar (two significant digits below it, never a bare 0.000000 for a
    cost that is not zero); `unpriced` when unknown."""
    if amount is None:
        return "unpriced"
    value = Decimal(str(amount))
    if 0 < abs(value) < MICRO_DOLLAR:
        return f"{value.quantize(Decimal(1).scaleb(value.adjusted() - 1)):f}"
    return f"{value:.6f}"


def render(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-align the first column, right-align the rest."""
    cells = [[str(value) for value in row] for row in rows]
    widths = [max(len(str(header)), *(len(row[i]) for row in cells)) for i, header in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            value.ljust(width) if i == 0 else value.rjust(width)
            for i, (value, width) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    rule = "-" * len(line(headers))
    return "\n".join([line(headers), rule, *(line(row) for row in cells)])
