"""Liveness, readiness and Prometheus metrics (public: no token needed)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import Connection, Engine, func, select, text

from alerts.cases import OPEN_STATES
from api.deps import EngineDep, ServiceDep
from core.domain import ALERT_KINDS
from core.metrics import Metrics
from store.schema import alerts, outbox

router = APIRouter(tags=["operations"])

#: How often a scrape counts the closed cases again. Cases are kept for good, so counting them all grew each scrape's
#: cost with every case the district ever had; the open ones, few, are counted by an index at every scrape.
CLOSED_RECOUNT_S = 600.0


class ClosedCounts:
    """The closed cases by kind, counted at most every :data:`CLOSED_RECOUNT_S` (one per process serving /metrics)."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.by_kind: dict[str, int] = {}
        self.counted_at: float | None = None

    def due(self) -> bool:
        return self.counted_at is None or self.clock() - self.counted_at >= CLOSED_RECOUNT_S

    def recount(self, conn: Connection) -> None:
        rows = conn.execute(
            select(alerts.c.kind, func.count()).where(alerts.c.state.not_in(OPEN_STATES)).group_by(alerts.c.kind)
        ).all()
        self.by_kind = {kind: int(count) for kind, count in rows}
        self.counted_at = self.clock()


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
    closed = getattr(request.app.state, "closed_counts", None)
    if closed is None:
        closed = request.app.state.closed_counts = ClosedCounts()
    refresh_store_gauges(registry_owner, engine, delivery=service is None, closed=closed)
    return Response(generate_latest(registry_owner.registry), media_type=CONTENT_TYPE_LATEST)


def refresh_store_gauges(metrics: Metrics, engine: Engine, *, delivery: bool, closed: ClosedCounts) -> None:
    """Gauges read from the store, so any process serving the API reports the same numbers."""
    try:
        with engine.connect() as conn:
            by_kind_state = conn.execute(
                select(alerts.c.kind, alerts.c.state, func.count())
                .where(alerts.c.state.in_(OPEN_STATES))
                .group_by(alerts.c.kind, alerts.c.state)
            ).all()
            if closed.due():
                closed.recount(conn)
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
        open_by_kind[kind] = open_by_kind.get(kind, 0) + count
    for kind, count in closed.by_kind.items():
        metrics.alerts_total.labels(kind=kind, state="resolved").set(count)
    for kind, count in open_by_kind.items():
        metrics.alerts_open.labels(kind=kind).set(count)
    if pending is not None:
        count, oldest = pending
        metrics.delivery_pending.set(count)
        metrics.delivery_parked.set(parked)
        metrics.delivery_lag.set(time.time() - oldest if oldest is not None else 0.0)
