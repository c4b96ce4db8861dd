"""Liveness, readiness and Prometheus metrics (public: no token needed)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import Engine, func, select, text

from api.deps import EngineDep, ServiceDep
from core.domain import ALERT_KINDS
from core.metrics import Metrics
from store.schema import alerts, outbox

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers.")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: broker connected and store reachable (503 when not).",
    responses={503: {"description": "Not ready; the body says which check failed."}},
)
def readyz(engine: EngineDep, service: ServiceDep) -> JSONResponse:
    if service is not None:
        checks = service.readiness()
    else:  # API-only process: the store is all it needs
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks = {"store": True, "ready": True}
        except Exception as exc:  # report, never raise
            checks = {"store": False, "store_error": type(exc).__name__, "ready": False}
    return JSONResponse(checks, status_code=200 if checks["ready"] else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics: readings in, dead letters, alerts by kind and state, delivery lag.",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}, "description": "Metrics."}},
)
def metrics(request: Request, engine: EngineDep, service: ServiceDep) -> Response:
    registry_owner: Metrics = request.app.state.metrics
    if service is not None:
        service.readiness()  # refreshes the delivery and broker gauges
    refresh_store_gauges(registry_owner, engine, delivery=service is None)
    return Response(generate_latest(registry_owner.registry), media_type=CONTENT_TYPE_LATEST)


def refresh_store_gauges(metrics: Metrics, engine: Engine, *, delivery: bool) -> None:
    """Gauges read from the store, so any process serving the API reports the same numbers."""
    try:
        with engine.connect() as conn:
            by_kind_state = conn.execute(
                select(alerts.c.kind, alerts.c.state, func.count()).group_by(alerts.c.kind, alerts.c.state)
            ).all()
            pending: Any = None
            if delivery:
                pending = conn.execute(
                    select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.status == "pending")
                ).one()
                parked = conn.execute(select(func.count()).where(outbox.c.status == "parked")).scalar_one()
    except Exception:  # the store is down: /readyz says so; keep the last values
        return
    open_by_kind = dict.fromkeys(ALERT_KINDS, 0)
    metrics.alerts_total.clear()
    for kind, state, count in by_kind_state:
        metrics.alerts_total.labels(kind=kind, state=state).set(count)
        if state != "resolved":
            open_by_kind[kind] = open_by_kind.get(kind, 0) + count
    for kind, count in open_by_kind.items():
        metrics.alerts_open.labels(kind=kind).set(count)
    if pending is not None:
        count, oldest = pending
        metrics.delivery_pending.set(count)
        metrics.delivery_parked.set(parked)
        metrics.delivery_lag.set(time.time() - oldest if oldest is not None else 0.0)
