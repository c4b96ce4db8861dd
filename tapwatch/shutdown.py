"""The SIGTERM handler :func:`tapwatch.cli.main` installs and :mod:`tapwatch.serving` obeys.

Kept apart from the server (which imports uvicorn and the API) so that the
command line can install it without loading either: ``tapwatch --help`` stays fast.
"""

from __future__ import annotations

import threading
from typing import Any


class Shutdown:
    """SIGTERM handling that never raises inside arbitrary code: it only asks the server to stop.

    uvicorn handles SIGTERM itself while it runs and then re-raises it to this handler; a
    SIGTERM during start-up is remembered and stops the server before it starts. Either way
    ``serve`` returns and the caller's clean-up (finish the batch, save state) runs.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.server: Any = None

    def __call__(self, _signum: int, _frame: object) -> None:
        self.requested.set()
        if self.server is not None:
            self.server.should_exit = True


shutdown = Shutdown()
