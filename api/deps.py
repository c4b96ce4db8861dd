"""Dependencies shared by routes: the store engine, the running service, settings."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Connection, Engine

from tapwatch.settings import Settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_conn(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Connection]:
    """One transaction per request: committed on success, rolled back on any error."""
    with engine.begin() as conn:
        yield conn


def get_service(request: Request) -> Any:
    return request.app.state.service


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


ConnDep = Annotated[Connection, Depends(get_conn)]
EngineDep = Annotated[Engine, Depends(get_engine)]
ServiceDep = Annotated[Any, Depends(get_service)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
