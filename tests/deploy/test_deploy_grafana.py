"""The provisioned Grafana dashboard's panels, their queries run as Grafana sends them on a real InfluxDB (1.6).

Grafana fills ``$timeFilter``, ``$__interval`` (wider as the range grows: 2 h and more past about three months
on a full-width panel), ``$__interval_ms`` and the dashboard's variables into each raw InfluxQL query; the test
does the same and reads what the panel would draw.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.influx_fixtures import (
    InfluxServer,
    influx_server,  # noqa: F401  (the fixture: influx)
)

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "tapwatch.json"
HOUR_S = 3600
DAY_S = 86400


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def _panel(title_part: str) -> dict[str, Any]:
    (panel,) = [p for p in _dashboard()["panels"] if title_part in p["title"]]
    return panel


def _constants() -> dict[str, str]:
    return {v["name"]: v["query"] for v in _dashboard()["templating"]["list"] if v["type"] == "constant"}


def _as_grafana_sends(query: str, start_s: int, end_s: int, interval: str, constants: dict[str, str]) -> str:
    seconds = int(interval[:-1]) * {"h": HOUR_S, "d": DAY_S}[interval[-1]]
    text = query.replace("$timeFilter", f"time >= {start_s * 1000}ms and time <= {end_s * 1000}ms")
    text = text.replace("$__interval_ms", str(seconds * 1000)).replace("$__interval", interval)
    text = text.replace("$community", ".*").replace("$elder", ".*")  # "All" (allValue)
    for name, value in constants.items():
        text = text.replace(f"${name}", value)
    assert not re.search(r"\$[\w{]", text), f"a variable Grafana would fill is left: {text}"
    return text


def _series(server: InfluxServer, query: str) -> dict[int, float]:
    resp = httpx.post(f"{server.direct_url}/query", params={"db": server.database, "q": query, "epoch": "s"})
    resp.raise_for_status()
    (result,) = resp.json()["results"]
    assert "error" not in result, result
    return {int(t): float(v) for series in result.get("series", []) for t, v in series["values"]}


def _write(server: InfluxServer, points: list[tuple[int, float]]) -> None:
    body = "\n".join(f"readings,community=C1,elder_id=E1,meter_id=M1 usage_l={v} {t}" for t, v in points)
    resp = httpx.post(f"{server.direct_url}/write", params={"db": server.database, "precision": "s"}, content=body)
    resp.raise_for_status()


@pytest.mark.parametrize("interval", ["1h", "2h", "6h", "1d"])
def test_the_hourly_panel_shows_litres_per_hour_at_any_range(influx: InfluxServer, interval: str) -> None:
    """The "L per hour" panel summed use per $__interval: over more than about three months Grafana widens it to
    2 h or more, and the panel drew litres per 2 h (or per day) under its "L per hour" title."""
    start = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
    _write(influx, [(start + k * 1800, 10.0) for k in range(2 * 48)])  # 20 L every hour for two days
    (target,) = _panel("L per hour")["targets"]
    values = _series(influx, _as_grafana_sends(target["query"], start, start + 2 * DAY_S - 1, interval, _constants()))
    assert values and set(values.values()) == {20.0}, values


def test_the_daily_panel_cuts_days_at_the_districts_offset(influx: InfluxServer) -> None:
    """The daily panel grouped days with time(1d, 16h), midnight at UTC+8, whatever INFLUXDB_DAY_OFFSET a
    district elsewhere set for its aggregates: at UTC+1 (23h) its bars cut each day at 17:00 local."""
    (target,) = _panel("Daily use")["targets"]
    assert "$day_offset" in target["query"]
    district = {**_constants(), "day_offset": "23h"}  # UTC+1, as docs/influx.md tells such a district to set
    day = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())
    # 00:30 and 22:30 local on 2 December (23:30 on the 1st and 21:30 UTC): one local day, one bar
    _write(influx, [(day + 23 * HOUR_S + 1800, 7.0), (day + DAY_S + 21 * HOUR_S + 1800, 5.0)])
    values = _series(influx, _as_grafana_sends(target["query"], day, day + 3 * DAY_S, "1h", district))
    assert values == {day + 23 * HOUR_S: 12.0}


def test_the_dashboard_s_day_offset_is_the_stack_s() -> None:
    """Grafana reads no environment in a dashboard file: the offset is a constant variable of the dashboard,
    shipped equal to the stack's INFLUXDB_DAY_OFFSET and named beside it in .env.example, where a district
    sets both."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    default = re.fullmatch(
        r"\$\{INFLUXDB_DAY_OFFSET:-(\w+)\}", compose["services"]["influxdb"]["environment"]["INFLUXDB_DAY_OFFSET"]
    )
    assert default is not None
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    assert re.search(r"^INFLUXDB_DAY_OFFSET=(\w+)$", example, re.M).group(1) == default.group(1)  # type: ignore[union-attr]
    assert _constants()["day_offset"] == default.group(1)
    comment = example[: example.index("INFLUXDB_DAY_OFFSET=")].rsplit("\n\n", 1)[-1]
    assert "day_offset" in comment and "tapwatch.json" in comment, "the district is not told to set the dashboard's"
