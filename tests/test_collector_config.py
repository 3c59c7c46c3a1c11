"""collector-config/: the collector config's structure, Prometheus rules under promtool, and the
dashboard's queries run against a real Prometheus scraping an instrumented app."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

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
    compose = load_yaml("docker-compose.yaml")["services"]
    assert set(compose) == {"otel-collector", "jaeger", "prometheus", "grafana"}
    for name, service in compose.items():
        tag = service["image"].partition(":")[2]
        assert tag and tag != "latest" and re.match(r"v?\d+\.\d+\.\d+$", tag), (name, service["image"])
        for volume in service.get("volumes", []):
            assert (CONFIG / volume.split(":")[0]).exists(), volume
    assert "16686:16686" in compose["jaeger"]["ports"] and "3000:3000" in compose["grafana"]["ports"]
    assert compose["jaeger"]["image"].startswith("jaegertracing/jaeger:2.")
    assert compose["prometheus"]["image"].startswith("prom/prometheus:v3.")


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


# End to end on a real Prometheus -----------------------------------------------------------------


def test_prometheus_holds_exactly_what_the_app_spent(scraped) -> None:
    prometheus, spans = scraped
    spent: dict[str, float] = {}
    for span in spans:
        if "gen_ai.usage.cost.amount" in span.attributes:
            model = span.attributes["gen_ai.request.model"]
            spent[model] = spent.get(model, 0.0) + span.attributes["gen_ai.usage.cost.amount"]
    result = prometheus.wait_for(
        "sum by (gen_ai_request_model) (gen_ai_client_operation_cost_USD_sum)", lambda r: len(r) == len(spent)
    )
    assert {
        item["metric"]["gen_ai_request_model"]: float(item["value"][1]) for item in result
    } == pytest.approx(spent, rel=1e-12)
    tokens = prometheus.query("sum by (gen_ai_token_type) (gen_ai_client_token_usage_sum)")
    expected_input = sum(span.attributes.get("gen_ai.usage.input_tokens", 0) for span in spans)
    assert {item["metric"]["gen_ai_token_type"]: float(item["value"][1]) for item in tokens}[
        "input"
    ] == expected_input
    calls = prometheus.query("sum(gen_ai_client_operation_duration_seconds_count)")
    assert float(calls[0]["value"][1]) == len(spans)


GRAFANA_VARIABLES = {"$__rate_interval": "1h", "$__range": "1h", "$service": ".*", "$model": ".*"}


def test_every_dashboard_query_runs_and_the_money_panels_have_data(scraped) -> None:
    prometheus, spans = scraped
    prometheus.wait_for(
        "sum(increase(gen_ai_client_operation_cost_USD_sum[1h]))",
        lambda r: bool(r) and float(r[0]["value"][1]) > 0,
    )
    costs = [span.attributes.get("gen_ai.usage.cost.amount", 0.0) for span in spans]
    total_spend = sum(costs)
    # Prometheus saw the series after the first half of the traffic: increase() over the range covers
    # at least the second half (and extrapolates a little at the edges).
    second_half = sum(costs[len(costs) // 2 :])
    for panel in dashboard()["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            result = prometheus.query(expr)
            assert result, (panel["title"], expr)
            values = [float(item["value"][1]) for item in result]
            if "latency" in panel["title"].lower() or "first chunk" in panel["title"].lower():
                assert all(0 < value <= 81.92 for value in values), (panel["title"], values)
            if panel["title"] in ("Total spend in range", "Top spenders in range"):
                assert second_half * 0.99 <= sum(values) <= total_spend * 2, (panel["title"], values)
            if panel["title"] == "Cost per call":
                assert min(c for c in costs if c) <= values[0] <= max(costs), values


def test_the_dashboard_offers_every_model_and_shows_no_error_as_zero(scraped) -> None:
    """Its variables list the models and services of every call, priced or not; the error rate of a model
    without errors is 0, not "No data"."""
    prometheus, spans = scraped
    offered = {}
    for variable in dashboard()["templating"]["list"]:
        metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["query"]["query"]).groups()
        values = prometheus.api(f"label/{label}/values", **{"match[]": metric})["data"]
        offered[variable["name"]] = set(values)
    assert offered["model"] == {span.attributes["gen_ai.request.model"] for span in spans}
    assert UNPRICED_MODEL in offered["model"]  # (services: the collector adds service_name, not this app)
    (panel,) = [panel for panel in dashboard()["panels"] if panel["title"] == "Error rate"]
    expr = panel["targets"][0]["expr"].replace("$model", "gpt-4o-mini")  # its calls all succeeded
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert [float(item["value"][1]) for item in prometheus.query(expr)] == [0.0]


def test_alert_rules_load_in_prometheus(scraped) -> None:
    prometheus, _ = scraped
    rules = prometheus.api("rules")["data"]["groups"]
    alerts = {rule["name"] for group in rules for rule in group["rules"] if rule["type"] == "alerting"}
    assert alerts == {"LLMDailyBudgetExceeded", "LLMSpendBurnRateHigh", "LLMSpendSpike"}
    assert all(rule["health"] in ("ok", "unknown") for group in rules for rule in group["rules"])
