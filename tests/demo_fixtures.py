"""``tapwatch demo`` as a user runs it: a real process in a fresh directory, ports free on 127.0.0.1.

The directory holds a link to this checkout's ``.venv`` so ``.venv/bin/tapwatch`` and the demo's
default store ``var/demo`` resolve there as in a clone. Tests wait on the demo's own output lines.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.helpers import this_tree
from tests.processes import free_port, wait_until

#: Simulated seconds per wall second: the two live days take 24 s instead of the default 96 s.
SPEED = 7200.0
#: The demo stops itself after this long even if a test forgets to (a bound, not a wait).
EXIT_AFTER_S = 600.0
#: How long a demo may take to stop on SIGTERM (it checkpoints and closes its store; it took seconds).
STOP_WAIT_S = 30.0
#: What the demo says when the port chosen for it was taken meanwhile (tapwatch.serving.PORT_TAKEN, in the
#: demo's TAPWATCH_LANGUAGE: the default, Chinese, here) or uvicorn says it.
PORT_TAKEN = ("已被占用", "address already in use")


class RunningDemo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.mqtt_port = free_port()
        self.log = workdir / "demo.log"
        (workdir / ".venv").symlink_to(sys.prefix)  # the venv running the tests: a worktree has none
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        return self.workdir / "var" / "demo" / "tapwatch.db"

    def start(self) -> RunningDemo:
        # A port free when chosen can be taken before the demo binds it (another process's outgoing connection
        # gets it from the same range): then the demo is started again on fresh ports (it resets its own directory).
        for attempt in range(3):
            try:
                return self._start()
            except RuntimeError:
                self.stop()  # a demo that did not start must not run on for its --exit-after
                if not self._port_taken() or attempt == 2:
                    raise
                self.port, self.mqtt_port = free_port(), free_port()
        raise AssertionError("unreachable")

    def _start(self) -> RunningDemo:
        env = this_tree({k: v for k, v in os.environ.items() if not k.startswith("TAPWATCH_")})
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    ".venv/bin/tapwatch",
                    "demo",
                    *("--port", str(self.port), "--mqtt-port", str(self.mqtt_port)),
                    *("--speed", str(SPEED), "--exit-after", str(EXIT_AFTER_S)),
                ],
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        answered_or_refused = lambda: self._answers() or self._port_taken()  # noqa: E731
        started = self.wait_for("tapwatch demo is running", 120) and wait_until(answered_or_refused, 60, 0.2)
        if not (started and self._answers()):
            raise RuntimeError(f"the demo did not start:\n{self.output()[-3000:]}")
        return self

    def _port_taken(self) -> bool:
        return any(words in self.output() for words in PORT_TAKEN)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, text: str, timeout: float) -> bool:
        """Wait until the demo printed ``text`` (False at the timeout or if the demo ended without it)."""
        ended = lambda: self.proc is not None and self.proc.poll() is not None  # noqa: E731
        return wait_until(lambda: text in self.output() or ended(), timeout, 0.2) and text in self.output()

    def accounts(self) -> dict[str, str]:
        """Demo username -> password, from the banner."""
        return dict(re.findall(r"demo account: (\S+)\s+password (\S+)", self.output()))

    def stop(self) -> bool:
        """Stop the demo as a service manager does (SIGTERM); False if it had to be killed."""
        if self.proc is None or self.proc.poll() is not None:
            return True
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return False
        return True
