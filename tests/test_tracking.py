"""track(): who spent it, nested and concurrent; budgets: refusing or warning at the limit."""

from __future__ import annotations

import asyncio
import contextvars
import decimal
import gc
import json
import logging
import pickle
import threading
from decimal import Decimal

import pytest
import requests
from opentelemetry import baggage, trace
from opentelemetry import context as context_api
from opentelemetry.trace import StatusCode

from otel_tokencost import Budget, BudgetExceededError, OpenAIInstrumentor, RequestsInstrumentor, names, track
from otel_tokencost import budgets as budgets_module
from otel_tokencost.budgets import Budgets
from otel_tokencost.pricing import Pricer
from otel_tokencost.telemetry import Telemetry
from otel_tokencost.tracking import current as current_tracking

from conftest import genai_cost

MESSAGES = [{"role": "user", "content": "hi"}]


def usage(prompt: int, completion: int) -> dict:
    return {"x-mock-usage": json.dumps({"prompt_tokens": prompt, "completion_tokens": completion})}


def chat(client, prompt: int = 1000, completion: int = 100, model: str = "gpt-4o-mini"):
    return client.chat.completions.create(
        model=model, messages=MESSAGES, extra_headers=usage(prompt, completion)
    )


def tracking_ids(telemetry) -> list:
    return [span.attributes.get(names.TRACKING_ID) for span in telemetry.spans()]


def test_nested_blocks_inner_values_win_and_spend_adds_up(instrumented, client) -> None:
    with track(tracking_id="checkout", attributes={"app.feature": "cart"}) as outer:
        chat(client, 1000, 100)
        with track(tracking_id="checkout-recommend", attributes={"app.step": "rank"}) as inner:
            chat(client, 2000, 300)
            chat(client, 500, 50, model="my-finetune")  # unpriced
        chat(client, 10, 1)
    first, second, unpriced, last = instrumented.spans()
    assert first.attributes[names.TRACKING_ID] == "checkout" and first.attributes["app.feature"] == "cart"
    assert "app.step" not in first.attributes
    assert second.attributes[names.TRACKING_ID] == "checkout-recommend"
    assert (second.attributes["app.feature"], second.attributes["app.step"]) == ("cart", "rank")
    assert unpriced.attributes[names.TRACKING_ID] == "checkout-recommend"
    assert names.USAGE_COST_AMOUNT not in unpriced.attributes
    assert last.attributes[names.TRACKING_ID] == "checkout" and "app.step" not in last.attributes
    inner_cost = genai_cost("gpt-4o-mini", 2000, 300)
    assert (inner.calls, inner.input_tokens, inner.output_tokens) == (2, 2500, 350)
    assert (inner.cost, inner.unpriced_calls) == (inner_cost, 1)
    assert (outer.calls, outer.input_tokens, outer.output_tokens, outer.unpriced_calls) == (4, 3510, 451, 1)
    assert outer.cost == genai_cost("gpt-4o-mini", 1000, 100) + inner_cost + genai_cost("gpt-4o-mini", 10, 1)
    by_id = {}
    for point in instrumented.points(names.METRIC_COST):
        by_id[point.attributes[names.TRACKING_ID]] = point
    assert by_id["checkout-recommend"].attributes["app.step"] == "rank"
    assert by_id["checkout-recommend"].sum == pytest.approx(float(inner_cost), rel=1e-12)
    assert by_id["checkout"].count == 2


def test_no_block_no_tracking_attributes(instrumented, client) -> None:
    chat(client)
    assert names.TRACKING_ID not in instrumented.span().attributes
    assert all(names.TRACKING_ID not in p.attributes for p in instrumented.points(names.METRIC_COST))


def test_decorator_on_a_sync_function(instrumented, client) -> None:
    @track(tracking_id="report-job", attributes={"app.feature": "reports"})
    def job(n: int) -> str:
        return chat(client, n, 1).id

    assert job.__name__ == "job"
    job(10)
    job(20)
    assert tracking_ids(instrumented) == ["report-job", "report-job"]
    assert instrumented.spans()[0].attributes["app.feature"] == "reports"


async def test_decorator_on_static_class_and_async_methods(instrumented, client, async_client) -> None:
    """Written above `@staticmethod` or `@classmethod`, the decorator tracks the method it holds."""

    class Jobs:
        @track(tracking_id="static-async")
        @staticmethod
        async def summarize() -> None:
            await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

        @track(tracking_id="class-sync")
        @classmethod
        def report(cls) -> None:
            chat(client)

    await Jobs.summarize()
    Jobs.report()
    Jobs().report()
    assert tracking_ids(instrumented) == ["static-async", "class-sync", "class-sync"]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"tracking_id": 123}, TypeError, "tracking_id must be a string or None, not int"),
        ({"attributes": {"gen_ai.request.model": "fake"}}, ValueError, "set by the instrumentation itself"),
        ({"attributes": {"tokencost.tracking_id": "x"}}, ValueError, "set by the instrumentation itself"),
        ({"attributes": {"error.type": "nope"}}, ValueError, "set by the instrumentation itself"),
        ({"attributes": {1: "x"}}, TypeError, "attribute names must be non-empty strings"),
        ({"attributes": {"app.owner": object()}}, TypeError, "'app.owner' must be a string, bool, int"),
        ({"attributes": {"app.tags": []}}, TypeError, "'app.tags' must be"),
        ({"attributes": {"app.tags": ["a", 1]}}, TypeError, "'app.tags' must be"),
        ({"attributes": {"app.owner": {"team": "a"}}}, TypeError, "'app.owner' must be"),
    ],
)
def test_track_refuses_what_spans_and_metrics_cannot_take(kwargs, error, message) -> None:
    """At once, where the app wrote it: not as a call recorded under someone else's name, nor as the SDK's
    warnings at every call."""
    with pytest.raises(error, match=message):
        track(**kwargs)


def test_track_takes_the_attributes_spans_and_metrics_record(instrumented, client) -> None:
    attributes = {"app.tags": ["a", "b"], "app.weight": 0.5, "app.beta": True, "gen_ai.conversation.id": "c1"}
    with track(tracking_id="t", attributes=attributes):
        chat(client)
    span = instrumented.span()
    assert {key: span.attributes[key] for key in attributes} == {**attributes, "app.tags": ("a", "b")}
    (point,) = instrumented.points(names.METRIC_DURATION)
    assert point.attributes["app.weight"] == 0.5 and point.attributes[names.TRACKING_ID] == "t"


def test_a_responses_requests_own_conversation_id_wins_over_the_blocks(instrumented, client) -> None:
    with track(attributes={"gen_ai.conversation.id": "from-the-block"}):
        client.responses.create(model="gpt-4.1", input="hi", conversation="conv_from_the_request")
        chat(client)
    responses, chat_span = instrumented.spans()
    assert responses.attributes["gen_ai.conversation.id"] == "conv_from_the_request"
    assert chat_span.attributes["gen_ai.conversation.id"] == "from-the-block"


def test_a_generator_function_is_refused_as_its_body_runs_after_the_call() -> None:
    def words():
        yield "a"

    async def async_words():
        yield "a"

    for function in (words, async_words):
        with pytest.raises(TypeError, match="around the loop that consumes it"):
            track(tracking_id="streamer")(function)


async def test_asyncio_tasks_keep_their_own_ids(instrumented, async_client) -> None:
    @track(tracking_id="async-job")
    async def decorated() -> None:
        await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    async def tenant(name: str) -> Decimal:
        with track(tracking_id=name) as spend:
            await asyncio.sleep(0)
            await async_client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers=usage(100 * len(name), 10)
            )
        return spend.cost

    costs = await asyncio.gather(tenant("a"), tenant("bb"), tenant("ccc"), decorated())
    by_id = {span.attributes[names.TRACKING_ID]: span for span in instrumented.spans()}
    assert set(by_id) == {"a", "bb", "ccc", "async-job"}
    assert by_id["bb"].attributes[names.USAGE_INPUT_TOKENS] == 200
    assert costs[:3] == [genai_cost("gpt-4o-mini", 100 * n, 10) for n in (1, 2, 3)]


async def test_one_track_entered_by_tasks_at_once_leaves_each_its_own_block(
    instrumented, async_client
) -> None:
    """A `track` made once (at module level, say) and entered by overlapping tasks: each task's block
    ends in that task, and its calls count in its own Spend."""
    checkout = track(tracking_id="checkout")

    async def task(enter_after: float, leave_after: float) -> tuple:
        await asyncio.sleep(enter_after)
        with checkout as spend:
            await asyncio.sleep(leave_after)
            await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        await async_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        return spend.calls, current_tracking()

    # the first to enter leaves first, while the second is still inside
    assert await asyncio.gather(task(0, 0.02), task(0.01, 0.3)) == [(1, None), (1, None)]
    assert sorted(tracking_ids(instrumented), key=str) == [None, None, "checkout", "checkout"]


def test_threads_with_a_copied_context(instrumented, client) -> None:
    seen: dict[str, int] = {}

    def work(name: str) -> None:
        with track(tracking_id=name) as spend:
            chat(client)
        seen[name] = spend.calls

    with track(tracking_id="parent"):
        context = contextvars.copy_context()
        inherited = threading.Thread(target=context.run, args=(chat, client))
        inherited.start()
        inherited.join()
    plain = threading.Thread(target=chat, args=(client,))  # a new thread starts with an empty context
    plain.start()
    plain.join()
    workers = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    ids = tracking_ids(instrumented)
    assert ids[:2] == ["parent", None]
    assert sorted(ids[2:]) == ["t0", "t1", "t2", "t3"] and seen == {f"t{i}": 1 for i in range(4)}


def test_stream_finished_after_the_block_counts_in_it(instrumented, client) -> None:
    with track(tracking_id="streamer") as spend:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers={"x-mock-chunks": "4"}
        )
    assert spend.calls == 0
    list(stream)
    span = instrumented.span()
    assert span.attributes[names.TRACKING_ID] == "streamer"
    assert (spend.calls, spend.output_tokens) == (1, 4)
    assert float(spend.cost) == span.attributes[names.USAGE_COST_AMOUNT]


def test_failed_calls_count_as_unpriced(instrumented, client) -> None:
    import openai

    with track(tracking_id="flaky") as spend, pytest.raises(openai.InternalServerError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-mock-status": "500"}
        )
    assert (spend.calls, spend.unpriced_calls, spend.cost) == (1, 1, Decimal(0))


def test_tracking_id_from_baggage(telemetry, client, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_TOKENCOST_TRACKING_BAGGAGE_KEY", "tenant.id")
    OpenAIInstrumentor().instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    try:
        token = context_api.attach(baggage.set_baggage("tenant.id", "acme"))
        try:
            chat(client)
            with track(tracking_id="explicit"):
                chat(client)
        finally:
            context_api.detach(token)
        chat(client)
    finally:
        OpenAIInstrumentor().uninstrument()
    assert tracking_ids(telemetry) == ["acme", "explicit", None]


@pytest.mark.parametrize(("setting", "cap"), [("5", 5), (" 7 ", 7), ("", 1000), ("10k", 1000), ("0", 1000)])
def test_the_cap_on_tracking_ids_is_read_or_reported(monkeypatch, caplog, setting: str, cap: int) -> None:
    monkeypatch.setenv("OTEL_TOKENCOST_MAX_TRACKING_IDS", setting)
    assert Telemetry.from_config().max_tracking_ids == cap
    reported = f"OTEL_TOKENCOST_MAX_TRACKING_IDS={setting.strip()!r} is not a positive whole number"
    assert (reported in caplog.text) is (setting in ("10k", "0"))


def test_tracking_id_cardinality_is_capped(telemetry, client, monkeypatch, caplog) -> None:
    monkeypatch.setenv("OTEL_TOKENCOST_MAX_TRACKING_IDS", "2")
    OpenAIInstrumentor().instrument(
        tracer_provider=telemetry.tracer_provider, meter_provider=telemetry.meter_provider
    )
    try:
        for name in ("u1", "u2", "u3", "u4", "u1"):
            with track(tracking_id=name):
                chat(client)
    finally:
        OpenAIInstrumentor().uninstrument()
    assert tracking_ids(telemetry) == ["u1", "u2", "u3", "u4", "u1"]
    counts = {p.attributes[names.TRACKING_ID]: p.count for p in telemetry.points(names.METRIC_COST)}
    assert counts == {"u1": 2, "u2": 1, "_other": 2}
    assert caplog.text.count("more than 2 tracking ids") == 1


# Budgets ---------------------------------------------------------------------------------------


def instrument_with(telemetry, budgets: Budgets, baggage_key: str | None = None) -> None:
    engine = Telemetry(
        trace.get_tracer("otel_tokencost", tracer_provider=telemetry.tracer_provider),
        telemetry.meter_provider.get_meter("otel_tokencost"),
        Pricer(),
        budgets=budgets,
        baggage_key=baggage_key,
    )
    OpenAIInstrumentor().instrument(telemetry=engine)
    RequestsInstrumentor().instrument(telemetry=engine)


@pytest.fixture
def budgeted(telemetry):
    def install(*budgets: Budget, clock=None) -> None:
        instrument_with(telemetry, Budgets(budgets, clock=clock) if clock else Budgets(budgets))

    yield install
    OpenAIInstrumentor().uninstrument()
    RequestsInstrumentor().uninstrument()


def test_budget_refuses_once_the_limit_is_reached(budgeted, telemetry, client, server) -> None:
    first = genai_cost("gpt-4o-mini", 1000, 100)
    budgeted(Budget(limit=float(first)))
    chat(client)  # spends exactly the limit
    before = server.requests_seen
    with pytest.raises(BudgetExceededError) as refused:
        chat(client)
    assert server.requests_seen == before  # nothing was sent
    assert refused.value.spent == first and refused.value.limit == first
    assert f"spent {first} USD of {first} USD" in str(refused.value) and "lifetime budget" in str(
        refused.value
    )
    span = telemetry.spans()[-1]
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes[names.ERROR_TYPE] == "BudgetExceededError"
    assert names.USAGE_INPUT_TOKENS not in span.attributes and names.USAGE_COST_AMOUNT not in span.attributes
    with pytest.raises(BudgetExceededError):
        requests.post(
            f"{server.base_url}/chat/completions", json={"model": "gpt-4o-mini", "messages": []}, timeout=5
        )
    assert server.requests_seen == before


@pytest.mark.parametrize(
    ("limit", "spent", "shown"),
    [(1e-7, Decimal("0.0000018"), ("0.0000001", "0.0000018")), (100, Decimal("1E+2"), ("100", "100"))],
)
def test_a_refusal_states_its_amounts_in_plain_digits(limit, spent: Decimal, shown: tuple) -> None:
    error = BudgetExceededError(Budget(limit=limit, tracking_id="t"), spent)
    budget, spend = shown
    assert str(error) == (
        f"lifetime budget of {budget} USD for tracking id 't' exceeded: spent {spend} USD of {budget} USD"
    )


def test_budget_just_under_the_limit_allows_the_call(budgeted, telemetry, client) -> None:
    first = genai_cost("gpt-4o-mini", 1000, 100)
    budgeted(Budget(limit=float(first) * 1.0001))
    chat(client)
    chat(client)
    with pytest.raises(BudgetExceededError):
        chat(client)
    assert len(telemetry.spans()) == 3


def test_warn_budget_logs_once_and_marks_the_span(budgeted, telemetry, client, caplog) -> None:
    budgeted(Budget(limit=0, action="warn"))
    with caplog.at_level(logging.WARNING):
        chat(client)
        chat(client)
    assert caplog.text.count("lifetime budget of 0 USD exceeded") == 1
    for span in telemetry.spans():
        assert [event.name for event in span.events] == ["tokencost.budget.exceeded"]
        assert span.status.status_code == StatusCode.UNSET


def test_budget_per_tracking_id(budgeted, telemetry, client) -> None:
    budgeted(Budget(limit=0.0, tracking_id="free-tier"))
    chat(client)
    with track(tracking_id="paid"):
        chat(client)
    with track(tracking_id="free-tier"), pytest.raises(BudgetExceededError):
        chat(client)
    assert tracking_ids(telemetry) == [None, "paid", "free-tier"]


def test_a_budget_counts_the_calls_of_blocks_nested_in_its_tracking_id(budgeted, telemetry, client) -> None:
    """A call inside track("tenant") is the tenant's, however deeply it is nested in other blocks (which
    name it for spans and metrics): the tenant's budget counts it, and refuses it once used up."""
    first = genai_cost("gpt-4o-mini", 1000, 100)
    budgeted(Budget(limit=float(first), tracking_id="tenant"))
    with track(tracking_id="tenant"), track(tracking_id="summarize"), track(attributes={"step": "1"}):
        chat(client)  # spends the tenant's whole budget
    with track(tracking_id="other"), track(tracking_id="summarize"):
        chat(client)  # not the tenant's
    for inner in ("tenant", "summarize"):
        tenant, nested = track(tracking_id="tenant"), track(tracking_id=inner)
        with pytest.raises(BudgetExceededError) as refused, tenant, nested:
            chat(client)
        assert refused.value.spent == first
    assert tracking_ids(telemetry) == ["summarize", "summarize", "tenant", "summarize"]


def test_a_budget_counts_a_request_whose_baggage_names_its_tracking_id(telemetry, client) -> None:
    """The caller's baggage id is in force inside the request's own blocks: a block naming no id leaves
    it the call's tracking id, and a block naming another still leaves the call inside it for budgets."""
    first = genai_cost("gpt-4o-mini", 1000, 100)
    instrument_with(telemetry, Budgets([Budget(limit=float(first), tracking_id="acme")]), "tenant.id")
    token = context_api.attach(baggage.set_baggage("tenant.id", "acme"))
    try:
        with track(attributes={"feature": "search"}):
            chat(client)  # spends acme's whole budget
        with track(tracking_id="summarize"), pytest.raises(BudgetExceededError):
            chat(client)
    finally:
        context_api.detach(token)
        OpenAIInstrumentor().uninstrument()
        RequestsInstrumentor().uninstrument()
    assert tracking_ids(telemetry) == ["acme", "summarize"]
    (first_span, _) = telemetry.spans()
    assert first_span.attributes["feature"] == "search"


def test_daily_budget_rolls_over_at_utc_midnight(budgeted, client) -> None:
    now = [1_780_012_800.0 - 60]  # one minute before a UTC midnight
    budgeted(Budget(limit=float(genai_cost("gpt-4o-mini", 1000, 100)), period="day"), clock=lambda: now[0])
    chat(client)
    with pytest.raises(BudgetExceededError):
        chat(client)
    now[0] += 61
    chat(client)  # a new day
    with pytest.raises(BudgetExceededError):
        chat(client)


def test_monthly_budget_rolls_over_on_the_first(budgeted, client) -> None:
    now = [1_782_863_999.0]  # 2026-06-30 23:59:59 UTC
    budgeted(Budget(limit=0.000001, period="month"), clock=lambda: now[0])
    chat(client)
    with pytest.raises(BudgetExceededError):
        chat(client)
    now[0] += 1
    chat(client)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"limit": -1},
        {"limit": "10"},
        {"limit": float("nan")},
        {"limit": Decimal("NaN")},
        {"limit": 1, "period": "week"},
        {"limit": 1, "action": "block"},
    ],
)
def test_bad_budget_is_refused_at_once(kwargs) -> None:
    with pytest.raises(ValueError):
        Budget(**kwargs)


def test_budgets_are_safe_under_threads(budgeted, client) -> None:
    limit = genai_cost("gpt-4o-mini", 1000, 100) * 5
    budgeted(Budget(limit=float(limit)))
    outcomes: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            chat(client)
            result = "ok"
        except BudgetExceededError:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=work) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == ["ok"] * 5
    with pytest.raises(BudgetExceededError) as refused:
        chat(client)
    assert refused.value.spent == limit


def test_unhashable_track_attributes_still_reach_the_metrics(instrumented, client) -> None:
    with track(tracking_id="tagged", attributes={"app.tags": ["a", "b"]}):
        chat(client)
        chat(client)
    (point,) = instrumented.points(names.METRIC_COST)
    assert point.count == 2 and tuple(point.attributes["app.tags"]) == ("a", "b")
    assert tuple(instrumented.spans()[0].attributes["app.tags"]) == ("a", "b")


def test_a_stream_the_collector_ends_while_the_budgets_are_checked_does_not_hang(
    budgeted, telemetry, client, monkeypatch
) -> None:
    """A stream the app dropped in a reference cycle is ended by the garbage collector, which may run
    while this thread checks the budgets: ending it spends, under the lock the check holds."""
    budgeted(Budget(limit=1.0))
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=usage(1000, 100)
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].finish_reason:
            break
    gc.disable()
    try:
        holder = {"stream": stream}
        holder["self"] = holder
        del stream, chunk, holder  # garbage in a cycle: its call ends when the collector runs
        period_key = budgets_module._period_key

        def collecting(period, now):  # a collection starting inside the lock, as any allocation may
            gc.collect()
            return period_key(period, now)

        monkeypatch.setattr(budgets_module, "_period_key", collecting)
        caller = threading.Thread(target=chat, args=(client,), daemon=True)
        caller.start()
        caller.join(timeout=20)
    finally:
        gc.enable()
    assert not caller.is_alive(), "the call waited forever for the budgets' lock"
    assert len(telemetry.spans()) == 2


def test_a_refusal_crosses_a_process_boundary_as_it_was_made() -> None:
    """A process pool hands a worker's exception to its parent pickled."""
    refused = BudgetExceededError(Budget(limit=0.5, period="day"), Decimal("0.75"))
    again = pickle.loads(pickle.dumps(refused))
    assert (type(again), again.budget, again.spent, str(again)) == (
        BudgetExceededError,
        refused.budget,
        refused.spent,
        str(refused),
    )


def test_a_refused_call_is_no_call_of_the_blocks(budgeted, telemetry, client) -> None:
    budgeted(Budget(limit=0.0))
    with track(tracking_id="t") as spend, pytest.raises(BudgetExceededError):
        chat(client)
    assert (spend.calls, spend.unpriced_calls) == (0, 0)
    assert telemetry.span().attributes[names.ERROR_TYPE] == "BudgetExceededError"  # still on the span


def test_the_apps_decimal_context_neither_rounds_nor_raises(budgeted, telemetry, client) -> None:
    """Money code may trap inexact results and floats, at a low precision: costs, spends and budgets
    are counted in a context of their own."""
    cost = genai_cost("gpt-4o-mini", 1234, 567)  # more digits than the precision
    limit = float(2 * cost)
    with decimal.localcontext() as context:
        context.prec = 3
        context.traps[decimal.Inexact] = context.traps[decimal.FloatOperation] = True
        budgeted(Budget(limit=limit, period="day"), Budget(limit=limit, tracking_id="t", action="warn"))
        with track(tracking_id="t") as spend:
            for _ in range(2):
                chat(client, 1234, 567)
            with pytest.raises(BudgetExceededError) as refused:
                chat(client, 1234, 567)
    assert spend.cost == 2 * cost and spend.unpriced_calls == 0
    assert [span.attributes.get(names.USAGE_COST_AMOUNT) for span in telemetry.spans()] == [
        float(cost)
    ] * 2 + [None]
    assert f"spent {2 * cost} USD" in str(refused.value)


def test_budgets_given_as_a_generator_apply(telemetry, client) -> None:
    import otel_tokencost

    otel_tokencost.instrument(
        tracer_provider=telemetry.tracer_provider,
        meter_provider=telemetry.meter_provider,
        budgets=(Budget(limit=limit) for limit in (0.0,)),
    )
    try:
        with pytest.raises(BudgetExceededError):
            chat(client)
    finally:
        otel_tokencost.uninstrument()


def test_a_clock_set_back_counts_in_the_period_it_left(budgeted, telemetry, client) -> None:
    """A day's budget used up just before midnight: a clock stepped back after midnight stays in the new
    day, and does not give the old one its budget again."""
    now = [86400 * 20_000 - 60.0]  # a minute before a UTC midnight
    budgeted(Budget(limit=float(genai_cost("gpt-4o-mini", 1000, 100)), period="day"), clock=lambda: now[0])
    chat(client)
    with pytest.raises(BudgetExceededError):
        chat(client)
    now[0] += 61  # past midnight: a new day
    chat(client)
    now[0] -= 2  # stepped back across midnight
    with pytest.raises(BudgetExceededError):
        chat(client)
