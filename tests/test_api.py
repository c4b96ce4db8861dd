"""The API against a real migrated store: registry, alerts, errors as problem+json."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from alerts.manager import AlertManager
from api.main import create_app
from tapwatch.domain import Finding
from tapwatch.registry import meter_context
from tapwatch.settings import get_settings

ELDER = {
    "elder_id": "E1",
    "meter_id": "M1",
    "name": "李桂芳",
    "community": "大宁社区",
    "building": "7号楼",
    "room": "201",
    "contacts": [{"name": "李强", "relation": "儿子", "phone": "13900000000"}],
}


@pytest.fixture
def client(engine) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(create_app(get_settings(), engine))


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["store"] is True


def test_register_list_and_get_elder(client: TestClient) -> None:
    created = client.post("/elders", json=ELDER)
    assert created.status_code == 201, created.text
    assert created.json()["meter_id"] == "M1"
    listed = client.get("/elders", params={"community": "大宁社区"}).json()
    assert listed["count"] == 1 and listed["data"][0]["name"] == "李桂芳"
    assert "contacts" not in listed["data"][0]  # lists carry no personal contacts
    assert client.get("/elders/E1").json()["room"] == "201"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/elders", {"elder_id": "E2"}, 422),
        ("post", "/elders", {**ELDER, "elder_id": "bad id!"}, 422),
        ("get", "/elders/nobody", None, 404),
        ("get", "/alerts?state=maybe", None, 422),
        ("get", "/alerts?limit=0", None, 422),
        ("get", "/alerts?since=2026-11-23T08:00:00", None, 400),
        ("get", "/alerts/unknown", None, 404),
        ("delete", "/elders", None, 405),
    ],
)
def test_bad_requests_get_problem_json(client: TestClient, method: str, path: str, body: object, status: int) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status


def test_duplicate_registration_is_a_conflict(client: TestClient) -> None:
    assert client.post("/elders", json=ELDER).status_code == 201
    again = client.post("/elders", json={**ELDER, "elder_id": "E9"})
    assert again.status_code == 409
    assert "already registered" in again.json()["detail"]


def test_alerts_filtering(client: TestClient, engine) -> None:  # type: ignore[no-untyped-def]
    client.post("/elders", json=ELDER)
    manager = AlertManager(notifiers=["webhook"])
    with engine.begin() as conn:
        elder = meter_context(conn, "M1")
        assert elder is not None
        now = time.time()
        manager.apply(conn, elder, Finding("M1", "no_activity", "high", now - 60, "未用水", "no use"), now)
        manager.apply(conn, elder, Finding("M1", "no_activity", "high", now, "未用水", "no use"), now)  # still open
        manager.apply(conn, elder, Finding("M1", "meter_offline", "low", now, "离线", "offline"), now)
    all_alerts = client.get("/alerts").json()
    assert all_alerts["count"] == 2  # one open alert per elder and kind
    only = client.get("/alerts", params={"kind": "meter_offline"}).json()
    assert [a["kind"] for a in only["data"]] == ["meter_offline"]
    assert client.get("/alerts", params={"community": "别的社区"}).json()["count"] == 0
    one = client.get(f"/alerts/{only['data'][0]['alert_id']}").json()
    assert one["message"] == {"zh": "离线", "en": "offline"}


def test_openapi_documents_the_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/healthz", "/readyz", "/elders", "/alerts", "/alerts/{alert_id}"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200
