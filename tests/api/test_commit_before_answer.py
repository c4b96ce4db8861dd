"""A change the API answers as made is committed before the answer leaves.

The request's transaction was committed by its dependency's exit, which FastAPI runs after the response is
sent: a caller told 200 could read the old value back on its next request (the dashboard reloading a page
just saved), and a commit that then failed (a dropped connection) still had answered 200 for a change lost.
The app is driven here as a server drives it; what the store holds is read at the moment the answer starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import orjson
from sqlalchemy import select

from api.main import create_app
from core.settings import get_settings
from store import open_store
from store.schema import elders
from tests.api_fixtures import ELDER_A, B, add_elder, add_user


def test_a_patch_is_committed_when_its_answer_starts(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'tapwatch.db'}")
    _user_id, token = add_user(engine, "admin", "admin", [])
    add_elder(engine, ELDER_A)
    app = create_app(get_settings(), engine)
    body = orjson.dumps({"community": B, "reason": "moved in with her son"})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "PATCH",
        "scheme": "http",
        "path": f"/elders/{ELDER_A['elder_id']}",
        "raw_path": f"/elders/{ELDER_A['elder_id']}".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    seen: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            seen["status"] = message["status"]
            with engine.connect() as conn:  # what another request would read now
                query = select(elders.c.community).where(elders.c.elder_id == ELDER_A["elder_id"])
                seen["community"] = conn.execute(query).scalar_one()

    anyio.run(app, scope, receive, send)
    engine.dispose()
    assert seen == {"status": 200, "community": B}
