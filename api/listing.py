"""Lists alike everywhere: filters as WHERE clauses, ``sort`` as ``field`` or ``-field``, then a page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import Query
from sqlalchemy import Connection, Select, func, select

from api.deps import Page


def sort_query(fields: Sequence[str], default: str) -> Any:
    """A ``sort`` query parameter accepting ``field`` (ascending) or ``-field`` (descending)."""
    return Query(
        pattern="^-?(" + "|".join(fields) + ")$",
        description=f"Sort by one of {', '.join(fields)}; prefix '-' for descending.",
        examples=[default],
    )


def fetch_page(
    conn: Connection,
    query: Select[Any],
    where: Sequence[Any],
    sort: str,
    columns: Mapping[str, Any],
    tiebreak: Any,
    page: Page,
) -> tuple[list[Any], int]:
    """Rows of one page and the total count matching ``where``."""
    where = [w for w in where if w is not None]
    filtered = query.where(*where)
    count = conn.execute(select(func.count()).select_from(filtered.order_by(None).subquery())).scalar_one()
    column = columns[sort.lstrip("-")]
    order = column.desc() if sort.startswith("-") else column.asc()
    rows = conn.execute(filtered.order_by(order, tiebreak).limit(page.limit).offset(page.offset)).all()
    return list(rows), int(count)
