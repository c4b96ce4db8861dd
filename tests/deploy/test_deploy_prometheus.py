"""deploy/prometheus: the alert rules watch metrics tapwatch really exports, and fire when they should.

The metric names and labels come from core/metrics.py's registry, not from a
list kept here; promtool (Debian's prometheus package) checks the rules and runs
their unit tests (deploy/prometheus/tapwatch-rules.test.yml) when installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from core.metrics import Metrics
from tests.conftest import REPO

PROMETHEUS = REPO / "deploy" / "prometheus"
RULES = PROMETHEUS / "tapwatch-rules.yml"
PROMTOOL = shutil.which("promtool")
# Series Prometheus makes itself for every target.
SYNTHETIC = {"up": {"job", "instance"}}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"job", "instance"}
# PromQL words that look like metric names.
PROMQL = {"sum", "max", "min", "avg", "count", "increase", "rate", "absent", "without", "by", "and", "or", "unless"}


def _exported() -> dict[str, set[str]]:
    """Every series name the monitor exports, with its labels (counters as ``_total``, histograms split)."""
    out: dict[str, set[str]] = {}
    for collector in list(Metrics().registry._collector_to_names):  # one per metric family
        for family in collector.describe():
            labels = set(getattr(collector, "_labelnames", ())) | TARGET_LABELS
            suffixes = {
                "counter": ["_total", "_created"],
                "histogram": ["_bucket", "_sum", "_count", "_created"],
            }.get(family.type, [""])
            for suffix in suffixes:
                out[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return out


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"] for rule in group["rules"]]


def test_rules_reference_only_metrics_and_labels_tapwatch_exports() -> None:
    exported = {**_exported(), **SYNTHETIC}
    assert "tapwatch_readings_received_total" in exported and "tapwatch_delivery_lag_seconds" in exported
    for rule in _rules():
        expr = re.sub(r'"[^"]*"', '""', rule["expr"])  # label values are not names
        names = {n for n in re.findall(r"\b([a-z_][a-z0-9_]*)\b", expr) if n not in PROMQL and not n.isdigit()}
        metrics = {n for n in names if n in exported or n.startswith("tapwatch_")}
        assert metrics, f"{rule['alert']}: no metric in {rule['expr']!r}"
        for metric in metrics:
            assert metric in exported, f"{rule['alert']}: tapwatch exports no {metric}"
        selectors = " ".join(re.findall(r"\{([^}]*)\}", expr))
        grouping = re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
        labels = set(re.findall(r"([a-z_]+)\s*(?:=|!=|=~|!~)", selectors))
        labels |= {part.strip() for item in grouping for part in item.split(",") if part.strip()}
        known = set().union(*(exported[m] for m in metrics))
        assert labels <= known, f"{rule['alert']}: labels {labels - known} exist on none of {metrics}"
        for text in (rule.get("annotations") or {}).values():
            for label in re.findall(r"\$labels\.([a-z_]+)", text):
                assert label in known, f"{rule['alert']}: annotation uses unknown label {label}"


def test_the_four_failures_the_district_must_hear_about_are_covered() -> None:
    exprs = " ".join(rule["expr"] for rule in _rules())
    for needed in (
        "tapwatch_readings_received_total",  # stalled ingest
        "tapwatch_delivery_lag_seconds",  # delivery lag
        "tapwatch_delivery_parked",  # parked events
        'up{job="tapwatch"} == 0',  # a down worker
    ):
        assert needed in exprs, needed
    for rule in _rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_prometheus_scrapes_the_tapwatch_service_and_loads_the_rules() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    service = compose["services"]["prometheus"]
    mounts = dict(v.split(":")[1::-1] for v in service["volumes"] if v.startswith("./"))
    for rule_file in config["rule_files"]:
        assert (REPO / mounts[rule_file]).resolve() == RULES
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "tapwatch"]
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host in compose["services"] and port == compose["services"]["tapwatch"]["environment"]["TAPWATCH_API_PORT"]


@pytest.mark.skipif(PROMTOOL is None, reason="promtool comes with Debian's prometheus package")
def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    check = subprocess.run([str(PROMTOOL), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        [str(PROMTOOL), "test", "rules", "tapwatch-rules.test.yml"], cwd=PROMETHEUS, capture_output=True, text=True
    )
    assert test.returncode == 0, test.stdout + test.stderr
