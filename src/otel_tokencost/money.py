"""The decimal context money is counted in.

The app's own context (a precision of 6, a trap for inexact results or for floats) must neither round
a cost nor make the instrumentation raise: costs, spends and budgets are added, multiplied and scaled
in this one, exact for any sum of costs.
"""

from decimal import ROUND_HALF_EVEN, Context

MONEY = Context(prec=60, rounding=ROUND_HALF_EVEN, traps=[])
