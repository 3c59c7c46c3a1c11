"""collector-config/: the collector config's structure, Prometheus rules under promtool, and the
dashboard's queries run against a real Prometheus scraping an instrumented app."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from otel_tokencost.prometheus_report import SCOPE, window_increase

from prometheus_server import UNPRICED_MODEL, require_tool

CONFIG = Path(__file__).parent.parent / "collector-config"
REMOVED_EXPORTERS = {"jaeger", "jaeger_thrift", "logging", "otlp", "otlphttp"}  # gone, or renamed in 0.159
MESSAGE_ATTRIBUTES = ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions")
CONTRACT_METRICS = {
    "gen_ai_client_operation_cost_USD",
    "gen_ai_client_token_usage",
    "gen_ai_client_operation_duration_seconds",
    "gen_ai_client_operation_time_to_first_chunk_seconds",
}


def load_yaml(name: str) -> dict:
    return yaml.safe_load((CONFIG / name).read_text())


# The collector -----------------------------------------------------------------------------------


def test_every_pipeline_component_is_defined() -> None:
    config = load_yaml("otelcol-config.yaml")
    service = config["service"]
    for extension in service["extensions"]:
        assert extension in config["extensions"]
    connectors = config.get("connectors", {})
    used_as = {"receivers": set(), "exporters": set()}
    for name, pipeline in service["pipelines"].items():
        assert pipeline["receivers"] and pipeline["exporters"], name
        assert pipeline.get("processors", [None])[0] == "memory_limiter", name
        for section in ("receivers", "processors", "exporters"):
            for component in pipeline.get(section, []):
                defined = config.get(section, {}) | (connectors if section != "processors" else {})
                assert component in defined, f"{name}: {component} is not defined"
                if component in connectors:
                    used_as[section].add(component)
    for connector in connectors:
        assert connector in used_as["receivers"] and connector in used_as["exporters"], connector
    for exporter in config["exporters"]:
        assert exporter.split("/")[0] not in REMOVED_EXPORTERS, exporter


def test_collector_endpoints_and_redaction() -> None:
    config = load_yaml("otelcol-config.yaml")
    protocols = config["receivers"]["otlp"]["protocols"]
    assert (protocols["grpc"]["endpoint"], protocols["http"]["endpoint"]) == ("0.0.0.0:4317", "0.0.0.0:4318")
    prometheus = config["exporters"]["prometheus"]
    assert prometheus["endpoint"] == "0.0.0.0:8889"
    assert prometheus["resource_to_telemetry_conversion"] == {"enabled": True}
    assert config["exporters"]["otlp_grpc/jaeger"]["endpoint"] == "jaeger:4317"
    traces = config["service"]["pipelines"]["traces"]
    assert "transform/drop_message_content" in traces["processors"]
    statements = config["processors"]["transform/drop_message_content"]["trace_statements"]
    for attribute in MESSAGE_ATTRIBUTES:
        assert f'delete_key(span.attributes, "{attribute}")' in statements
    assert "health_check" in config["service"]["extensions"]


def test_compose_pins_images_and_mounts_what_exists() -> None:
    compose = load_yaml("docker-compose.yaml")
    services, named_volumes = compose["services"], compose.get("volumes", {})
    assert set(services) == {"otel-collector", "jaeger", "prometheus", "grafana"}
    for name, service in services.items():
        tag = service["image"].partition(":")[2]
        assert tag and tag != "latest" and re.match(r"v?\d+\.\d+\.\d+$", tag), (name, service["image"])
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):  # a file or folder of collector-config/
                assert (CONFIG / source).exists(), volume
            else:
                assert source in named_volumes, volume
    assert "16686:16686" in services["jaeger"]["ports"] and "3000:3000" in services["grafana"]["ports"]
    assert services["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    assert services["prometheus"]["image"].startswith("prom/prometheus:v3.")


def test_prometheus_keeps_what_the_report_and_the_spike_alert_look_back_on() -> None:
    """Its data lives in a named volume, for longer than the report's default 30 days and a week."""
    prometheus = load_yaml("docker-compose.yaml")["services"]["prometheus"]
    flags = dict(flag.removeprefix("--").split("=", 1) for flag in prometheus["command"])
    assert flags["config.file"] == "/etc/prometheus/prometheus.yml"
    assert flags["storage.tsdb.path"] == "/prometheus"
    assert "prometheus-data:/prometheus" in prometheus["volumes"]
    days = re.fullmatch(r"(\d+)d", flags["storage.tsdb.retention.time"])
    assert days and int(days[1]) >= 35, flags


def dashboard() -> dict:
    return json.loads((CONFIG / "grafana/dashboards/otel-tokencost.json").read_text())


def test_dashboard_uses_the_contract_names_and_provisioned_datasource() -> None:
    board = dashboard()
    datasources = load_yaml("grafana/provisioning/datasources/datasources.yaml")["datasources"]
    assert {"prometheus", "jaeger"} <= {source["uid"] for source in datasources}
    titles = {panel["title"] for panel in board["panels"]}
    for wanted in (
        "Spend by model",
        "Spend by provider",
        "Spend by tracking id",
        "Total spend in range",
        "Cost per call",
        "Tokens by type and model",
        "Latency p50 / p95 by model",
        "Time to first chunk p50 / p95 by model",
        "Calls and errors per second",
        "Top spenders in range",
    ):
        assert wanted in titles
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "prometheus"
        for target in panel["targets"]:
            metrics = set(re.findall(r"(gen_ai_\w+?)(?:_bucket|_sum|_count)\b", target["expr"]))
            assert metrics and metrics <= CONTRACT_METRICS, target["expr"]
        if "USD" in json.dumps(panel["targets"]) and "spend" in panel["title"].lower():
            assert panel["fieldConfig"]["defaults"]["unit"] == "currencyUSD", panel["title"]
    provider = load_yaml("grafana/provisioning/dashboards/dashboards.yaml")["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


SELECTOR = f'{{{SCOPE}, service_name=~"$service", gen_ai_request_model=~"$model"}}'
COST_SUM = "gen_ai_client_operation_cost_USD_sum"
TOKENS_SUM = "gen_ai_client_token_usage_sum"
PER_STEP = {  # panel title: (metric, its series' labels); each point is what was spent in its step
    "Spend by model": (COST_SUM, ["gen_ai_request_model"]),
    "Spend by provider": (COST_SUM, ["gen_ai_provider_name"]),
    "Spend by tracking id": (COST_SUM, ["tokencost_tracking_id"]),
    "Tokens by type and model": (TOKENS_SUM, ["gen_ai_token_type", "gen_ai_request_model"]),
}


def test_dashboard_sums_only_what_adds_up() -> None:
    """The "in range" panels are instant queries over the whole range. The spend and token panels show
    what each step added (window = step), so their legend's sum is the range's total; the quantile and
    per-second panels show no sum."""
    for panel in dashboard()["panels"]:
        exprs = [target["expr"] for target in panel["targets"]]
        if panel["type"] in ("stat", "table"):
            assert all(target["instant"] and target["range"] is False for target in panel["targets"])
            assert all("[$__range]" in expr and "interval" not in expr for expr in exprs), panel["title"]
        calcs = panel.get("options", {}).get("legend", {}).get("calcs", [])
        if panel["title"] in PER_STEP:
            metric, labels = PER_STEP[panel["title"]]
            assert exprs == [window_increase(metric + SELECTOR, "$__interval", labels)]
            assert calcs == ["sum"]
        else:
            assert "sum" not in calcs, panel["title"]
        # increase() only where a series reset (as window_increase uses it), never rate()
        assert all(expr.count("increase(") * 2 == expr.count("resets(") for expr in exprs), panel["title"]
        assert all("rate(" not in expr for expr in exprs), panel["title"]


def test_the_spend_rules_count_as_the_report_does_and_the_alerts_say_where_to_look() -> None:
    rules = [rule for group in load_yaml("prometheus/alerts.yml")["groups"] for rule in group["rules"]]
    recorded = {rule["record"]: rule["expr"] for rule in rules if "record" in rule}
    for window in ("1h", "24h"):
        assert recorded[f"tokencost:spend_usd:increase{window}"] == window_increase(COST_SUM, window)
    for alert in (rule for rule in rules if "alert" in rule):
        description = alert["annotations"]["description"]
        assert (
            "http://localhost:3000/d/otel-tokencost" in description and "otel-tokencost report" in description
        )
    assert dashboard()["uid"] == "otel-tokencost"


# promtool ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool(command: list[str]) -> None:
    promtool = require_tool("promtool")
    result = subprocess.run([promtool, *command], cwd=CONFIG / "prometheus", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_commented_alerting_block_is_ready_to_use(tmp_path) -> None:
    """Uncommented, it is a valid configuration that sends the alerts to an Alertmanager."""
    promtool = require_tool("promtool")
    text = (CONFIG / "prometheus/prometheus.yml").read_text()
    block = re.search(r"^# alerting:\n(?:#   .*\n)+", text, re.MULTILINE)
    assert block, "prometheus.yml has no commented alerting: block"
    uncommented = text.replace(block[0], "".join(line[2:] + "\n" for line in block[0].splitlines()))
    (tmp_path / "prometheus.yml").write_text(uncommented)
    shutil.copy(CONFIG / "prometheus/alerts.yml", tmp_path)
    result = subprocess.run(
        [promtool, "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (alertmanager,) = yaml.safe_load(uncommented)["alerting"]["alertmanagers"]
    assert alertmanager["static_configs"] == [{"targets": ["alertmanager:9093"]}]


# End to end on a real Prometheus -----------------------------------------------------------------


def spent_by(spans, *attributes: str) -> dict[tuple, float]:
    """The spans' cost summed by the values of `attributes` (None where a span has none)."""
    spent: dict[tuple, float] = {}
    for span in spans:
        if "gen_ai.usage.cost.amount" in span.attributes:
            key = tuple(span.attributes.get(attribute) for attribute in attributes)
            spent[key] = spent.get(key, 0.0) + span.attributes["gen_ai.usage.cost.amount"]
    return spent


def tokens_by_type_and_model(spans) -> dict[tuple, float]:
    tokens: dict[tuple, float] = {}
    for span in spans:
        for kind in ("input", "output"):
            key = (kind, span.attributes["gen_ai.request.model"])
            tokens[key] = tokens.get(key, 0) + span.attributes.get(f"gen_ai.usage.{kind}_tokens", 0)
    return tokens


def by_labels(result: list, *labels: str) -> dict[tuple, float]:
    return {tuple(item["metric"].get(label) for label in labels): float(item["value"][1]) for item in result}


def test_prometheus_holds_exactly_what_the_app_spent(scraped) -> None:
    prometheus, spans = scraped.prometheus, scraped.spans
    spent = spent_by(spans, "gen_ai.request.model")
    ours = '{otel_scope_name="otel_tokencost"}'  # beside another instrumentation's (openai-v2's) series
    result = prometheus.wait_for(
        f"sum by (gen_ai_request_model) (gen_ai_client_operation_cost_USD_sum{ours})",
        lambda r: len(r) == len(spent),
    )
    assert by_labels(result, "gen_ai_request_model") == pytest.approx(spent, rel=1e-12)
    tokens = prometheus.query(f"sum by (gen_ai_token_type) (gen_ai_client_token_usage_sum{ours})")
    expected_input = sum(span.attributes.get("gen_ai.usage.input_tokens", 0) for span in spans)
    assert by_labels(tokens, "gen_ai_token_type")[("input",)] == expected_input
    calls = prometheus.query(f"sum(gen_ai_client_operation_duration_seconds_count{ours})")
    assert float(calls[0]["value"][1]) == len(spans)
    every_scope = prometheus.query("sum(gen_ai_client_operation_duration_seconds_count)")
    assert float(every_scope[0]["value"][1]) > len(spans)  # the other instrumentation's are there


GRAFANA_VARIABLES = {  # as Grafana would set them for a 1 h range shown as one step
    "$__rate_interval": "1h",
    "$__interval_ms": "3600000",
    "$__interval": "1h",
    "$service": ".*",
    "$model": ".*",
}


def panel_exprs(title: str, **variables: str) -> list[str]:
    """The panel's queries, with Grafana's variables as given, else as in GRAFANA_VARIABLES."""
    (panel,) = [panel for panel in dashboard()["panels"] if panel["title"] == title]
    exprs = []
    for target in panel["targets"]:
        expr = target["expr"]
        for variable, value in (GRAFANA_VARIABLES | variables).items():
            expr = expr.replace(variable, value)
        exprs.append(expr)
    return exprs


def test_every_dashboard_query_runs(scraped) -> None:
    prometheus = scraped.prometheus
    for panel in dashboard()["panels"]:
        for expr in panel_exprs(panel["title"], **{"$__range": "1h"}):
            values = [float(item["value"][1]) for item in prometheus.query(expr)]
            assert values, (panel["title"], expr)
            if "latency" in panel["title"].lower() or "first chunk" in panel["title"].lower():
                assert all(0 < value <= 81.92 for value in values), (panel["title"], values)


@pytest.mark.parametrize("half", ["all", "second"])
def test_the_in_range_panels_are_exact(scraped, half: str) -> None:
    """Over all the traffic (every series reached Prometheus already non-zero, one with its only call),
    and over its second half only (a range that starts between the halves)."""
    prometheus, now = scraped.prometheus, time.time()
    spans = scraped.spans if half == "all" else scraped.second_half
    window = "1h" if half == "all" else f"{int(now - scraped.middle)}s"

    def stat(title: str) -> list:
        (expr,) = panel_exprs(title, **{"$__range": window})
        return prometheus.api("query", query=expr, time=str(now))["data"]["result"]

    spent = spent_by(spans, "tokencost.tracking_id", "gen_ai.request.model")
    priced = sum("gen_ai.usage.cost.amount" in span.attributes for span in spans)
    errors = sum("error.type" in span.attributes for span in spans)
    assert by_labels(stat("Total spend in range")) == pytest.approx({(): sum(spent.values())}, rel=1e-12)
    assert by_labels(stat("Calls in range")) == {(): len(spans)}
    assert by_labels(stat("Cost per call")) == pytest.approx({(): sum(spent.values()) / priced}, rel=1e-12)
    assert by_labels(stat("Error rate")) == {(): errors / len(spans)}
    top = by_labels(stat("Top spenders in range"), "tokencost_tracking_id", "gen_ai_request_model")
    assert top == pytest.approx(spent, rel=1e-12)


def calls_by_model(spans) -> dict[tuple, float]:
    calls: dict[tuple, float] = {}
    for span in spans:
        key = (span.attributes["gen_ai.request.model"],)
        calls[key] = calls.get(key, 0) + 1
    return calls


def test_the_per_step_panels_add_up_step_by_step(scraped) -> None:
    """Each point is what its step added, so the points of a series add up to its total, as the legend
    shows it (per second: times the step); here with 2 s steps aligned on multiples of 2 s, as Grafana
    aligns them."""
    prometheus, spans, step = scraped.prometheus, scraped.spans, 2
    start, end = (int(time.time()) // step - 1800) * step, (int(time.time()) // step + 2) * step
    expected = {
        "Spend by model": spent_by(spans, "gen_ai.request.model"),
        "Spend by provider": spent_by(spans, "gen_ai.provider.name"),
        "Spend by tracking id": spent_by(spans, "tokencost.tracking_id"),
        "Tokens by type and model": tokens_by_type_and_model(spans),
        "Calls and errors per second": calls_by_model(spans),
    }
    labels = {title: by for title, (_, by) in PER_STEP.items()} | {
        "Calls and errors per second": ["gen_ai_request_model"]
    }
    for title, wanted in expected.items():
        expr = panel_exprs(title, **{"$__interval_ms": str(step * 1000), "$__interval": f"{step}s"})[0]
        result = prometheus.query_range(expr, start, end, step)
        per_second = title.endswith("per second")
        totals = {
            tuple(item["metric"].get(label) for label in labels[title]): sum(
                float(value) * (step if per_second else 1) for _, value in item["values"]
            )
            for item in result
        }
        assert totals == pytest.approx(wanted, rel=1e-12), title


def test_the_dashboard_offers_every_model_and_shows_no_error_as_zero(scraped) -> None:
    """Its variables list the models and services of every call, priced or not; the error rate of a model
    without errors is 0, not "No data"."""
    prometheus, spans = scraped.prometheus, scraped.spans
    offered = {}
    for variable in dashboard()["templating"]["list"]:
        query = variable["query"]["query"]
        metric, label = re.fullmatch(r"label_values\((\w+\{.*\}), (\w+)\)", query).groups()
        values = prometheus.api(f"label/{label}/values", **{"match[]": metric})["data"]
        offered[variable["name"]] = set(values)
    assert offered["model"] == {span.attributes["gen_ai.request.model"] for span in spans}
    assert UNPRICED_MODEL in offered["model"]  # (services: the collector adds service_name, not this app)
    (panel,) = [panel for panel in dashboard()["panels"] if panel["title"] == "Error rate"]
    expr = panel["targets"][0]["expr"].replace("$model", "gpt-4o-mini")  # its calls all succeeded
    expr = expr.replace("$__range", "1h")
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert [float(item["value"][1]) for item in prometheus.query(expr)] == [0.0]


def test_alert_rules_load_in_prometheus_and_count_every_dollar(scraped) -> None:
    prometheus = scraped.prometheus
    rules = prometheus.api("rules")["data"]["groups"]
    alerts = {rule["name"] for group in rules for rule in group["rules"] if rule["type"] == "alerting"}
    assert alerts == {"LLMDailyBudgetExceeded", "LLMSpendBurnRateHigh", "LLMSpendSpike"}
    assert all(rule["health"] in ("ok", "unknown") for group in rules for rule in group["rules"])
    total = sum(spent_by(scraped.spans).values())
    for rule in ("tokencost:spend_usd:increase1h", "tokencost:spend_usd:increase24h"):
        prometheus.wait_for(
            rule, lambda r: bool(r) and float(r[0]["value"][1]) == pytest.approx(total, rel=1e-12)
        )
