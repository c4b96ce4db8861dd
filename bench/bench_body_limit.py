"""RSS of an API process sent a 400 MB request body with no token (issue 20 item 5).

Starts ``uvicorn`` serving :func:`api.main.create_app` over a fresh SQLite
store in a child process, streams a 400 MB JSON body to ``POST /elders``
without ``Authorization``, and reports the server's resident memory before,
at its peak while the upload runs, and after, with the answer's status and how
much of the body the server took before it answered.

    .venv/bin/python bench/bench_body_limit.py [--mb 400] [--path /elders]

Run it against an older checkout (``PYTHONPATH=<checkout>``) to see the
memory the same upload cost before bodies were bounded.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SERVER = """
import sys, uvicorn
from api.main import create_app
from core.settings import get_settings
from store import open_store
engine = open_store(sys.argv[1])
uvicorn.run(create_app(get_settings(), engine), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def upload(port: int, path: str, size: int) -> tuple[str, int, float]:
    """Send the whole body unless the server answers first; returns (status line, bytes sent, seconds)."""
    chunk = b"x" * (1 << 20)
    start = time.monotonic()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        sock.sendall(head.encode())
        try:
            while sent < size:
                sock.sendall(chunk[: min(len(chunk), size - sent)])
                sent += min(len(chunk), size - sent)
        except OSError:  # answered and closed before the body was all sent
            pass
        answer = b""
        try:
            while b"\r\n" not in answer:
                data = sock.recv(4096)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    return answer.split(b"\r\n", 1)[0].decode(errors="replace"), sent, time.monotonic() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=400, help="body size in MB (default 400)")
    parser.add_argument("--path", default="/elders", help="route to post to (default /elders)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {**os.environ, "TAPWATCH_DATA_DIR": tmp}
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, f"sqlite:///{tmp}/b.db", str(port)], env=env, stderr=subprocess.DEVNULL
        )
        try:
            wait_listening(port)
            time.sleep(1.0)
            before = rss_mb(proc.pid)
            peak = [before]
            done = threading.Event()

            def watch() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], rss_mb(proc.pid))
                    time.sleep(0.02)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            status, sent, seconds = upload(port, args.path, args.mb * 1_000_000)
            time.sleep(0.5)
            done.set()
            watcher.join()
            after = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"answer: {status}")
    print(f"body sent before the answer: {sent / 1e6:.1f} of {args.mb} MB in {seconds:.2f} s")
    print(f"server RSS: before {before:.0f} MB, peak {peak[0]:.0f} MB, after {after:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
