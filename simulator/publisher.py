"""Publish a :class:`SimResult` to an MQTT broker in the real message format, in accelerated time.

History (the first ``history_days``) goes out as fast as possible, packed up to 48
readings a message, so a monitor starts with learned routines; the rest is sent
in delivery order across meters, ``speed`` simulated seconds per wall second.
Every message is QoS 1 and acknowledged by the broker before we return.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import numpy as np
import orjson
import paho.mqtt.client as mqtt

from core.progress import Progress
from core.settings import shown_url, url_login
from simulator.labels import iso
from simulator.meter import MALFORMED_VARIANTS
from simulator.result import SimResult

log = logging.getLogger(__name__)
HISTORY_BATCH = 48
ACK_TIMEOUT_S = 60.0  # long enough to ride out a broker restart
SEND_CHUNK = 2000  # messages in flight before we wait for their acknowledgements


@dataclass
class Message:
    meter_idx: int
    rows: list[int]
    due: float  # simulated delivery time (epoch)


@dataclass
class PublishStats:
    messages: int = 0
    readings: int = 0
    malformed: int = 0
    history_messages: int = 0
    connects: int = 0  # more than 1: the connection dropped and paho reconnected
    meters: set[int] = field(default_factory=set)


def plan_messages(
    res: SimResult, history_days: float = 0.0, skip_days: float = 0.0
) -> tuple[list[Message], list[Message]]:
    """Split the delivered rows into (history, live) messages, each list in delivery order.

    Rows delivered in the first ``skip_days`` are left out (a caller loaded them another way).
    """
    cut = res.start_ts + history_days * 86400.0
    skip = res.start_ts + skip_days * 86400.0
    order = np.lexsort((np.arange(len(res.delivered_at)), res.delivered_at))
    history: dict[int, list[Message]] = {}
    live: dict[tuple[int, int], Message] = {}
    for row in order.tolist():
        m, due, bad = int(res.meter_idx[row]), float(res.delivered_at[row]), bool(res.malformed[row])
        if due < skip:
            continue
        if due < cut:
            msgs = history.setdefault(m, [])
            if bad or not msgs or len(msgs[-1].rows) >= HISTORY_BATCH or res.malformed[msgs[-1].rows[0]]:
                msgs.append(Message(m, [], due))
            msgs[-1].rows.append(row)
            msgs[-1].due = due
            continue
        key = (m, -1 - row) if bad else (m, int(res.message[row]))
        msg = live.setdefault(key, Message(m, [], due))
        msg.rows.append(row)
        msg.due = max(msg.due, due)  # a batch leaves when its last reading is ready
    hist = sorted((msg for msgs in history.values() for msg in msgs), key=lambda x: x.due)
    return hist, sorted(live.values(), key=lambda x: x.due)


def payload(res: SimResult, msg: Message) -> bytes:
    """The JSON body of one message (or a deliberately broken one for a malformed delivery).

    >>> from simulator import SimConfig, simulate
    >>> res = simulate(SimConfig(elders=1, days=1, seed=3, faults=False))
    >>> sorted(orjson.loads(payload(res, Message(0, [0, 1], 0.0))))
    ['battery_pct', 'meter_id', 'readings', 'rssi']
    """
    meter = res.meter_ids[msg.meter_idx]
    key = "total_m3" if res.config.unit == "m3" else "total_l"
    scale = 1000.0 if key == "total_m3" else 1.0
    off = res.tz_offset_s
    rows = sorted(msg.rows, key=lambda r: res.ts[r])
    last = rows[-1]
    body: dict[str, Any] = {
        "meter_id": meter,
        "readings": [],
        "battery_pct": int(res.battery_pct[last]),
        "rssi": int(res.rssi[last]),
    }
    code = int(res.malformed[rows[0]])
    for r in rows:
        body["readings"].append({"ts": iso(float(res.ts[r]), off), key: round(float(res.total_l[r]) / scale, 3)})
    if code == 0:
        return orjson.dumps(body)
    return _break(body, MALFORMED_VARIANTS[code - 1], key)


def _break(body: dict[str, Any], variant: str, key: str) -> bytes:
    reading = body["readings"][0]
    reading[key] = 0.0  # the real value never arrives with a malformed message
    if variant == "no_offset":
        reading["ts"] = reading["ts"][:-6]
    elif variant == "empty_total":
        del reading[key]
    elif variant == "negative_total":
        reading[key] = -1.0
    elif variant == "bad_ts":
        reading["ts"] = reading["ts"][:10] + "T25:61:00" + reading["ts"][-6:]
    else:  # truncated in transit: not even JSON
        raw = orjson.dumps(body)
        return raw[: len(raw) // 2]
    return orjson.dumps(body)


class _Acks:
    """Broker acknowledgements by message id, filled by paho's network thread.

    Waiting on ``MessageInfo.wait_for_publish`` fails for a message published while the
    connection was down, although paho queues it and sends it after reconnecting; counting
    PUBACKs ourselves lets a publish ride out a broker restart.
    """

    def __init__(self) -> None:
        self._done: set[int] = set()
        self._cond = threading.Condition()
        self.connects = 0

    def on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, _reason: Any, _props: Any) -> None:
        with self._cond:
            self._done.add(mid)
            self._cond.notify_all()

    def wait(self, mids: list[int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(mids)
        with self._cond:
            while True:
                # Consume the ids we waited for: paho reuses ids after 65,535 messages.
                found = pending & self._done
                self._done -= found
                pending -= found
                left = deadline - time.monotonic()
                if not pending or left <= 0:
                    break
                self._cond.wait(min(left, 1.0))
        if pending:
            raise TimeoutError(f"broker did not acknowledge {len(pending)} messages in {timeout:.0f} s")


def _connect(
    url: str, username: str | None, password: str | None, client_id: str, ca_file: str | None = None
) -> tuple[mqtt.Client, _Acks]:
    parts = urlparse(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp"):
        raise ValueError(f"unsupported MQTT URL {shown_url(url)!r}: use mqtt://host:port")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    url_user, url_password = url_login(url)
    if username or url_user:
        client.username_pw_set(username or url_user, password or url_password)
    if parts.scheme == "mqtts":
        # As the monitor's client (ingest.mqttclient.make_client): the given CA bundle, else the system's CAs.
        client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
    # No paho limit (0): _send bounds what is in flight to SEND_CHUNK itself, and paho's limit costs
    # a scan of every queued message on each acknowledgement.
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    acks = _Acks()
    client.on_publish = acks.on_publish
    connected = threading.Event()

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            acks.connects += 1
            connected.set()

    client.on_connect = on_connect
    client.connect(parts.hostname or "127.0.0.1", parts.port or (8883 if parts.scheme == "mqtts" else 1883))
    client.loop_start()
    if not connected.wait(15.0):
        client.loop_stop()
        raise ConnectionError(f"could not connect to MQTT broker at {shown_url(url)}")
    return client, acks


def _send(
    client: mqtt.Client, acks: _Acks, res: SimResult, msgs: list[Message], prefix: str, stats: PublishStats
) -> None:
    """Publish ``msgs`` and wait until the broker has acknowledged every one (QoS 1)."""
    for lo in range(0, len(msgs), SEND_CHUNK):
        mids = []
        for msg in msgs[lo : lo + SEND_CHUNK]:
            topic = f"{prefix}/{res.meter_ids[msg.meter_idx]}/readings"
            info = client.publish(topic, payload(res, msg), qos=1)
            # NO_CONN: paho keeps the QoS 1 message and sends it once it has reconnected.
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                raise ConnectionError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
            mids.append(info.mid)
            stats.messages += 1
            stats.readings += len(msg.rows)
            stats.malformed += int(res.malformed[msg.rows[0]] > 0)
            stats.meters.add(msg.meter_idx)
        acks.wait(mids, ACK_TIMEOUT_S)


class PublisherSession:
    """A connected publisher for callers that pace the messages themselves (tests, benchmarks).

    ``send`` returns once the broker has acknowledged every message (QoS 1).
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        prefix: str = "tapwatch/meters",
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.prefix = prefix
        self.stats = PublishStats()
        self.client, self.acks = _connect(url, username, password, client_id, ca_file)

    def send(self, res: SimResult, msgs: list[Message]) -> None:
        _send(self.client, self.acks, res, msgs, self.prefix, self.stats)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> PublisherSession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def publish(
    res: SimResult,
    url: str = "mqtt://127.0.0.1:1883",
    speed: float | None = 1800.0,
    prefix: str = "tapwatch/meters",
    history_days: float = 1.0,
    username: str | None = None,
    password: str | None = None,
    stop_event: threading.Event | None = None,
    client_id: str | None = None,
    progress: Progress | None = None,
    skip_days: float = 0.0,
    ca_file: str | None = None,
) -> PublishStats:
    """Publish the delivered readings (after the first ``skip_days``); returns counts. ``speed=None`` sends
    everything at once.

    ``progress`` counts the messages acknowledged (``tapwatch simulate --mqtt`` shows it on a terminal);
    ``ca_file`` verifies an ``mqtts://`` broker (default: the system's CAs).
    """
    history, live = plan_messages(res, history_days, skip_days)
    if progress is not None:
        progress.total = len(history) + len(live)
    stop = stop_event or threading.Event()
    stats = PublishStats()
    # A unique id by default: two publishers with one id would keep disconnecting each other.
    client, acks = _connect(
        url, username, password, client_id or f"tapwatch-simulator-{os.getpid()}-{id(res):x}", ca_file
    )
    try:
        _send(client, acks, res, history, prefix, stats)
        if progress is not None:
            progress.advance(len(history))
        stats.history_messages = len(history)
        log.info("published %d history messages; %d live messages follow", len(history), len(live))
        sim0 = max(res.start_ts + history_days * 86400.0, min((m.due for m in live), default=0.0))
        wall0 = time.monotonic()
        i = 0
        while i < len(live) and not stop.is_set():
            if speed is None:
                j = len(live)
            else:
                now_sim = sim0 + (time.monotonic() - wall0) * speed
                j = i
                while j < len(live) and live[j].due <= now_sim:
                    j += 1
                if j == i:  # nothing due yet: sleep until the next message is (or we are stopped)
                    stop.wait(min(1.0, (live[i].due - now_sim) / speed))
                    continue
            _send(client, acks, res, live[i:j], prefix, stats)
            if progress is not None:
                progress.advance(j - i)
            i = j
    finally:
        if progress is not None:
            progress.close()
        client.disconnect()
        client.loop_stop()
        stats.connects = acks.connects
    return stats
