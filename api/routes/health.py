"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import text

from api.deps import EngineDep, ServiceDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers.")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: broker connected and store reachable.")
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


@router.get("/metrics", summary="Prometheus metrics.", response_class=Response)
def metrics(service: ServiceDep) -> Response:
    if service is None:
        return Response(b"", media_type=CONTENT_TYPE_LATEST)
    service.readiness()  # refreshes the delivery gauges
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
