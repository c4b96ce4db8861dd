"""Notifiers: one small interface, three channels (grid-platform webhook, MQTT, SMS/phone gateway).

A notifier gets one outbox payload (a CloudEvent) and answers with a
:class:`Delivery`: delivered, retry later (perhaps after a server-given
delay), or failed for good. It never raises for a network problem: the
sender decides about retries, circuit breaking and parking.

Which notifiers run is configuration (:func:`build_notifiers`). ``webhook``
and ``mqtt`` are *platform* channels and carry every lifecycle event;
``wecom`` and ``dingtalk`` are cadres' *group robots*: they get the same
lifecycle events and post them as markdown in the group. ``sms`` is the
*contact* channel and carries only level-1 messages to the elder's emergency
contacts (and the daily note to families who opted in).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote_plus, urlparse

import httpx
import orjson

from alerts.events import SIGNATURE_HEADER, dumps, sign
from alerts.messages import chat_message
from core.retry import retry_after_s
from core.settings import Settings

log = logging.getLogger(__name__)

#: Group robots of the chat tools cadres and street offices read.
ROBOT_CHANNELS = frozenset({"wecom", "dingtalk"})
#: Channels that receive every lifecycle event (the grid platform, and the cadres' group robots).
PLATFORM_CHANNELS = frozenset({"webhook", "mqtt"}) | ROBOT_CHANNELS
#: Channels that reach a person's phone: only level-1 contact messages go there.
CONTACT_CHANNELS = frozenset({"sms"})
KNOWN_CHANNELS = PLATFORM_CHANNELS | CONTACT_CHANNELS


@dataclass(slots=True, frozen=True)
class Delivery:
    """What one attempt came to."""

    ok: bool
    retry_after: float | None = None  # seconds the receiver asked us to wait
    permanent: bool = False  # retrying cannot help (e.g. 400: the receiver rejects the event)
    error: str = ""
    reached: bool = True  # ok but nobody was there to take it (no group robot for the community): not "notified"
    asked: bool = True  # a request went out: only then does the answer say anything about the receiver


class Notifier(Protocol):
    name: str

    def send(self, event: Mapping[str, Any]) -> Delivery: ...


def http_client(timeout_s: float) -> httpx.Client:
    """An HTTP client with Nagle off: a small JSON event must not wait for the previous segment's ACK."""
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)], retries=0)
    return httpx.Client(timeout=timeout_s, transport=transport)


#: The longest a delivery waits for the rest of an answer whose status line has come.
DRAIN_S = 1.0


def post(client: httpx.Client, url: str, body: bytes, headers: Mapping[str, str]) -> Delivery:
    """POST ``body``; a transport error is a retryable failure, a response is judged by :func:`http_delivery`.

    The verdict is in the status line (for a 404, with the answer's body). A short answer is read to its end,
    so the connection serves the next event (a TLS handshake per event otherwise); a long or dripped one (each
    byte within the read timeout) is cut within :data:`DRAIN_S`, so it neither holds the lane nor turns a
    delivery into a retry.
    """
    try:
        with client.stream("POST", url, content=body, headers=dict(headers)) as response:
            answer = None
            # An answer that breaks off after its status changes no verdict: the connection is closed.
            with contextlib.suppress(httpx.HTTPError):
                answer = _read_answer(response, DRAIN_S)
            return http_delivery(response, answer, headers.get("Idempotency-Key", ""))
    except httpx.HTTPError as exc:
        return Delivery(False, error=f"{type(exc).__name__}: {exc}"[:500])


#: A status that refuses *us* (a token or secret the receiver does not take), not the event: every job would get
#: the same answer until an operator fixes the credential, so it waits for it like an outage (counted against
#: the receiver's circuit, retried, parked only after the give-up time) instead of each being parked at once.
#: Not 403: a receiver may forbid one event (an elder of a community it does not serve), and a retried 403 would
#: hold that elder's lane, a later fall's alert included, until the give-up time; it is parked, the lane goes on.
CREDENTIALS_REFUSED = frozenset({401})
#: Nothing at the URL: a wrong URL (a typo, a path the platform moved) gets every job the same answer, so it waits
#: for the fix as :data:`CREDENTIALS_REFUSED` does; unless the answer's body names the event (its id, the
#: ``Idempotency-Key``): then the receiver found us and refuses that one event (an alert it does not know).
NOT_FOUND = 404


def http_delivery(response: httpx.Response, answer: bytes | None = None, event_id: str = "") -> Delivery:
    """2xx delivered; 401/404/408/425/429/5xx retried (honouring Retry-After); other statuses fail for good.

    ``answer`` is the response's body as read (None if it was not), ``event_id`` the id of the event sent: a 404
    whose body names it refuses that event, and fails for good.
    """
    if response.is_success:
        return Delivery(True)
    status = response.status_code
    retry_after = retry_after_s(response.headers.get("Retry-After"))
    if status in CREDENTIALS_REFUSED:
        return Delivery(False, retry_after=retry_after, error=f"HTTP {status}: the receiver refuses our credentials")
    if status == NOT_FOUND:
        if event_id and answer is not None and event_id.encode() in answer:
            return Delivery(False, permanent=True, error=f"HTTP {status}: the receiver refuses this event")
        return Delivery(
            False, retry_after=retry_after, error=f"HTTP {status}: nothing at the receiver's URL (is it right?)"
        )
    retryable = status >= 500 or status in (408, 425, 429)
    return Delivery(False, retry_after=retry_after, permanent=not retryable, error=f"HTTP {status}")


class WebhookNotifier:
    """POST a CloudEvent (structured JSON) to the grid platform, signed with HMAC-SHA256.

    Headers: ``Content-Type: application/cloudevents+json``, ``Idempotency-Key``
    (the event id), and ``X-Tapwatch-Signature: t=<unix>,v1=<hex>``.
    """

    name = "webhook"

    def __init__(self, url: str, secret: bytes | None, timeout_s: float = 10.0) -> None:
        self.url = url
        self.secret = secret
        self._client = http_client(timeout_s)

    def send(self, event: Mapping[str, Any]) -> Delivery:
        body = dumps(dict(event))
        headers = {"Content-Type": "application/cloudevents+json", "Idempotency-Key": str(event["id"])}
        if self.secret:
            # Signed at send time with the real clock: the platform checks the age against its own clock.
            headers[SIGNATURE_HEADER] = sign(self.secret, body, int(time.time()))
        return post(self._client, self.url, body, headers)

    def close(self) -> None:
        self._client.close()


class SmsGatewayNotifier:
    """Text (or phone) an emergency contact through an HTTP gateway: POST JSON ``{to, text}``.

    The outbox payload is a CloudEvent whose ``data`` holds ``to`` and
    ``text``; the event id goes along as ``Idempotency-Key`` so the gateway can
    drop a repeat. A bearer token and an HMAC signature in the webhook's format
    are sent when configured, the signature under the gateway's own secret.
    """

    name = "sms"

    def __init__(
        self, url: str, token: str | None = None, secret: bytes | None = None, timeout_s: float = 10.0
    ) -> None:
        self.url = url
        self.token = token
        self.secret = secret
        self._client = http_client(timeout_s)

    def send(self, event: Mapping[str, Any]) -> Delivery:
        data = event.get("data") or {}
        if not data.get("to") or not data.get("text"):
            return Delivery(False, permanent=True, error="SMS job without a phone number or text", asked=False)
        body = orjson.dumps({"to": data["to"], "text": data["text"]})
        headers = {"Content-Type": "application/json", "Idempotency-Key": str(event["id"])}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body, int(time.time()))
        return post(self._client, self.url, body, headers)

    def close(self) -> None:
        self._client.close()


#: Robot error codes worth retrying: system busy, and the rate limits (WeCom 45009, DingTalk 130101).
WECOM_RETRYABLE = frozenset({-1, 45009})
DINGTALK_RETRYABLE = frozenset({-1, 130101})
#: A key the robot does not know (WeCom 93000 "invalid webhook url", DingTalk 300001 "token is not exist"): like
#: :data:`CREDENTIALS_REFUSED`, every message gets it until the key is fixed.
ROBOT_KEY_REFUSED = frozenset({93000, 300001})
#: DingTalk's security settings refused the request: a wrong signing secret ("sign not match"), a clock an hour
#: off ("invalid timestamp"), this machine's address not in the robot's whitelist: configuration again, every
#: message alike; but also a message without the robot's keyword ("keywords not in content"), which is that
#: message's (:func:`robot_delivery` tells them apart by the errmsg).
DINGTALK_SECURITY_REFUSED = 310000


def robot_delivery(body: bytes, retryable: frozenset[int]) -> Delivery:
    """A robot answers HTTP 200 with ``{"errcode": 0, "errmsg": "ok"}`` (``body``); any other errcode is a failure.

    Rate limits and "busy" are retried (after a minute at least: the robots count
    messages per minute); a key, signing secret or address the robot refuses is retried until it is fixed
    (counted against the robot's circuit); any other errcode (the robot's keyword missing, a malformed or too
    long message) will not get better and the job is parked.

    >>> robot_delivery(b'{"errcode": 310000, "errmsg": "sign not match"}', frozenset()).permanent
    False
    >>> robot_delivery(b'{"errcode": 310000, "errmsg": "keywords not in content"}', frozenset()).permanent
    True
    """
    try:
        answer = orjson.loads(body)
        code = int(answer.get("errcode", -1))
        message = str(answer.get("errmsg", ""))[:200]
    except (ValueError, TypeError, AttributeError):
        return Delivery(False, error="robot answered without errcode JSON")
    if code == 0:
        return Delivery(True)
    if code in retryable:
        return Delivery(False, retry_after=60.0, error=f"robot errcode {code}: {message}")
    if code in ROBOT_KEY_REFUSED:  # the robot's key, not the message: wait for the fix as for an HTTP 401
        return Delivery(False, error=f"robot errcode {code}: {message} (the robot's key is refused)")
    if code == DINGTALK_SECURITY_REFUSED and "keyword" not in message.lower():
        why = "the robot's security settings refuse us: its signing secret, this clock or its address whitelist"
        return Delivery(False, error=f"robot errcode {code}: {message} ({why})")
    return Delivery(False, permanent=True, error=f"robot errcode {code}: {message}")


_URL_CREDENTIALS = re.compile(r"\b(key|access_token|sign)=[^&\s\"']+")


class RedactRobotKeys(logging.Filter):
    """Masks robot credentials in URLs that HTTP libraries log (httpx logs every request URL at INFO).

    >>> r = logging.LogRecord("httpx", 20, "", 0, "POST %s", ("https://h/send?key=abc&x=1",), None)
    >>> RedactRobotKeys().filter(r), r.getMessage()
    (True, 'POST https://h/send?key=***&x=1')
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _URL_CREDENTIALS.sub(r"\1=***", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_REDACTOR = RedactRobotKeys()


def _guard_http_logs() -> None:
    """Put the redactor on the HTTP libraries' loggers once: whoever turns their level up sees no key."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _REDACTOR not in logger.filters:
            logger.addFilter(_REDACTOR)


class _RobotNotifier:
    """Post alert events to a group robot as markdown; the URL holds the robot's key, so it is never shown."""

    name = "robot"
    retryable: frozenset[int] = frozenset()

    def __init__(self, url: str, language: str = "zh", timeout_s: float = 10.0) -> None:
        self._url = url
        self.language = language
        self.timeout_s = timeout_s
        self._client = http_client(timeout_s)
        _guard_http_logs()

    def __repr__(self) -> str:  # the URL is a credential: keep it out of reprs and tracebacks
        return f"{type(self).__name__}(url=***)"

    def body(self, title: str, markdown: str) -> dict[str, Any]:
        raise NotImplementedError

    def url(self) -> str:
        return self._url

    def send(self, event: Mapping[str, Any]) -> Delivery:
        message = chat_message(event, self.language)
        if message is None:
            return Delivery(True, asked=False)  # bookkeeping event (e.g. "notified"): nothing for the group to read
        body = orjson.dumps(self.body(*message))
        try:
            with self._client.stream("POST", self.url(), content=body, headers=_JSON) as response:
                if not response.is_success:
                    return http_delivery(response)
                answer = _read_answer(response, self.timeout_s)
        except httpx.HTTPError as exc:
            # Only the exception's type: its text may quote the URL, and with it the robot's key.
            return Delivery(False, error=f"{type(exc).__name__} posting to the {self.name} robot")
        if answer is None:
            return Delivery(False, error=f"the {self.name} robot's answer was too slow or too long")
        return robot_delivery(answer, self.retryable)

    def close(self) -> None:
        self._client.close()


_JSON = {"Content-Type": "application/json"}
#: A robot's verdict is a line of JSON: a longer answer is not one.
ROBOT_ANSWER_MAX_BYTES = 64 * 1024


def _read_answer(response: httpx.Response, timeout_s: float) -> bytes | None:
    """An answer's body, read within ``timeout_s`` in all and :data:`ROBOT_ANSWER_MAX_BYTES`; None if it was not.

    The client's timeout bounds each read, not the whole answer: a body dripped a byte at a time would
    hold the lane for as long as the robot kept dripping.
    """
    ends = time.monotonic() + timeout_s
    answer = bytearray()
    for chunk in response.iter_bytes():
        answer += chunk
        if len(answer) > ROBOT_ANSWER_MAX_BYTES or time.monotonic() > ends:
            return None
    return bytes(answer)


#: WeCom takes at most 4096 bytes of markdown content.
WECOM_MARKDOWN_MAX = 4096


def _clip(text: str, max_bytes: int) -> str:
    """Cut to ``max_bytes`` of UTF-8 without splitting a character.

    >>> _clip("平安平安", 7)
    '平安'
    """
    return text.encode()[:max_bytes].decode(errors="ignore")


def _clip_body(markdown: str, max_bytes: int) -> str:
    """Cut a chat message (:func:`alerts.messages.chat_message`: title, body, the ``> 警报`` line) to ``max_bytes``
    of UTF-8 in its body, marked ``…``: the last line says which case it is about, and a long text (a closing
    reason of 2,000 characters) must not take it away.

    >>> _clip_body("**T**\\n\\n平安平安平安\\n\\n> 警报 1", 25)
    '**T**\\n\\n平…\\n\\n> 警报 1'
    """
    if len(markdown.encode()) <= max_bytes:
        return markdown
    body, sep, footer = markdown.rpartition("\n\n")
    tail = f"…{sep}{footer}"
    return _clip(body, max_bytes - len(tail.encode())) + tail


class WecomRobotNotifier(_RobotNotifier):
    """WeCom (企业微信) group robot: POST ``{"msgtype": "markdown", "markdown": {"content": ...}}`` to its URL."""

    name = "wecom"
    retryable = WECOM_RETRYABLE

    def body(self, title: str, markdown: str) -> dict[str, Any]:
        return {"msgtype": "markdown", "markdown": {"content": _clip_body(markdown, WECOM_MARKDOWN_MAX)}}


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signed-webhook ``sign``: urlencode(base64(HMAC-SHA256(secret, "<timestamp>\\n<secret>"))).

    >>> dingtalk_sign("SECabc", 1_700_000_000_000)
    'jcUpW0QmtKduN03n4JqQ0PBosVjqnM8gU7fIIvsDmCM%3D'
    """
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


class DingtalkRobotNotifier(_RobotNotifier):
    """DingTalk (钉钉) custom robot: POST ``{"msgtype": "markdown", "markdown": {"title", "text"}}``.

    With a signing secret (the robot's 加签 setting) each request carries
    ``&timestamp=<ms>&sign=<signature>``, computed at send time: DingTalk refuses
    a timestamp more than an hour off its clock.
    """

    name = "dingtalk"
    retryable = DINGTALK_RETRYABLE

    def __init__(self, url: str, secret: str | None = None, language: str = "zh", timeout_s: float = 10.0) -> None:
        super().__init__(url, language, timeout_s)
        self._secret = secret

    def url(self) -> str:
        if not self._secret:
            return self._url
        timestamp = int(time.time() * 1000)
        joiner = "&" if "?" in self._url else "?"
        return f"{self._url}{joiner}timestamp={timestamp}&sign={dingtalk_sign(self._secret, timestamp)}"

    def body(self, title: str, markdown: str) -> dict[str, Any]:
        return {"msgtype": "markdown", "markdown": {"title": title, "text": markdown}}


class CommunityRobots:
    """One group robot per community: a community's chat group reads its own elders' alerts and no one else's.

    An event goes to the robot of its community, else to ``default`` (the
    district-wide robot, when one is configured), else to no group: the grid
    platform still gets it on its own channel. Who lives alone, and where, is
    not for every community's group to read.
    """

    def __init__(self, name: str, robots: Mapping[str, Notifier], default: Notifier | None = None) -> None:
        self.name = name
        self.robots = dict(robots)
        self.default = default
        self._unrouted: set[str] = set()

    def __repr__(self) -> str:  # the robots' URLs are credentials
        return f"CommunityRobots({self.name}, communities={sorted(self.robots)}, default={self.default is not None})"

    def circuit(self, event: Mapping[str, Any]) -> str:
        """The group ``event`` goes to ("": the district's robot), for a circuit breaker of its own.

        One community's broken robot (a wrong host, a deleted group) must not hold back the other groups.
        """
        community = str((event.get("data") or {}).get("community") or "")
        return community if community in self.robots else ""

    def send(self, event: Mapping[str, Any]) -> Delivery:
        community = str((event.get("data") or {}).get("community") or "")
        robot = self.robots.get(community, self.default)
        if robot is None:
            if community not in self._unrouted:  # once per community: a gap in the configuration, not an error
                self._unrouted.add(community)
                log.info("%s: no group robot for community %r: platform only", self.name, community)
            return Delivery(True, reached=False, asked=False)
        return robot.send(event)

    def close(self) -> None:
        for robot in [*self.robots.values(), *([self.default] if self.default is not None else [])]:
            close = getattr(robot, "close", None)
            if close is not None:
                close()


_TOPIC_UNSAFE = re.compile(r"[+#/\x00]")


def alert_topic(prefix: str, community: str) -> str:
    """``tapwatch/alerts/{community}``; MQTT wildcards and slashes in a name are replaced.

    >>> alert_topic("tapwatch/alerts", "大宁社区"), alert_topic("tapwatch/alerts/", "a/b+c")
    ('tapwatch/alerts/大宁社区', 'tapwatch/alerts/a_b_c')
    """
    return f"{prefix.rstrip('/')}/{_TOPIC_UNSAFE.sub('_', community) or '_'}"


class MqttNotifier:
    """Publish the same CloudEvents on ``{prefix}/{community}`` with QoS 1, for platforms that subscribe.

    A job counts as delivered once the broker acknowledged it (PUBACK); while
    disconnected, jobs are refused (and retried by the sender) rather than
    queued inside paho, so the outbox stays the one place that holds them.
    """

    name = "mqtt"

    def __init__(
        self,
        url: str,
        prefix: str = "tapwatch/alerts",
        client_id: str = "tapwatch-alerts",
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        parsed = urlparse(url)
        tls = parsed.scheme in ("mqtts", "ssl")
        self.prefix = prefix
        self.timeout_s = timeout_s
        self._connected = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if username:
            self._client.username_pw_set(username, password)
        if tls:
            self._client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.connect_async(parsed.hostname or "127.0.0.1", parsed.port or (8883 if tls else 1883), 30)
        self._client.loop_start()

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason_code: Any, _props: Any) -> None:
        if not reason_code.is_failure:
            self._connected.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self._connected.clear()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def send(self, event: Mapping[str, Any]) -> Delivery:
        if not self._connected.is_set():
            return Delivery(False, error="MQTT broker not connected")
        community = str((event.get("data") or {}).get("community") or "_")
        info = self._client.publish(alert_topic(self.prefix, community), dumps(dict(event)), qos=1)
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as exc:
            return Delivery(False, error=f"MQTT publish failed: {exc}"[:500])
        if not info.is_published():
            return Delivery(False, error="MQTT publish not acknowledged in time")
        return Delivery(True)

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def build_notifiers(settings: Settings) -> dict[str, Notifier]:
    """The notifiers a monitor runs, from :class:`core.settings.Settings`.

    ``alert_notifiers`` lists them explicitly (a listed channel without its
    endpoint is a configuration error); when unset, every channel whose
    endpoint is configured runs (webhook if ``webhook_url``, SMS if
    ``sms_gateway_url``; MQTT only when listed).
    """
    return {name: _build_one(name, settings) for name in channel_names(settings)}


def channel_names(settings: Settings) -> list[str]:
    """The channel names :func:`build_notifiers` would run, without connecting anything.

    For an ``AlertManager`` outside the service (e.g. the API acknowledging an
    alert): it must queue events to the same channels the sender works.
    """
    wanted: list[str] | None = list(settings.alert_notifiers) if settings.alert_notifiers is not None else None
    if wanted is None:
        endpoints = (
            ("webhook", settings.webhook_url),
            ("sms", settings.sms_gateway_url),
            ("wecom", settings.wecom_robot_url or settings.wecom_community_robots),
            ("dingtalk", settings.dingtalk_robot_url or settings.dingtalk_community_robots),
        )
        wanted = [name for name, url in endpoints if url]
    for name in wanted:
        if name not in KNOWN_CHANNELS:
            raise ValueError(f"unknown alert notifier {name!r} (known: {', '.join(sorted(KNOWN_CHANNELS))})")
    return list(wanted)


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def require_https(url: str, what: str) -> str:
    """Alerts name elders: off this machine they travel over HTTPS only.

    >>> require_https("http://127.0.0.1:9000/e", "webhook_url")
    'http://127.0.0.1:9000/e'
    >>> require_https("http://platform.example/e", "webhook_url")
    Traceback (most recent call last):
    ...
    ValueError: webhook_url must use https:// (plain http is allowed on loopback only)
    """
    parsed = urlparse(url)
    if parsed.scheme == "https" or (parsed.scheme == "http" and parsed.hostname in _LOOPBACK):
        return url
    raise ValueError(f"{what} must use https:// (plain http is allowed on loopback only)")


def _secret(value: Any) -> bytes | None:
    """The secret's bytes; None when unset or empty (compose passes an unset variable as "")."""
    return value.get_secret_value().encode() or None if value is not None else None


UNSIGNED_WEBHOOK = {
    "zh": "TAPWATCH_WEBHOOK_SECRET 未设置：告警事件将以不签名的方式发往 TAPWATCH_WEBHOOK_URL，平台无法确认来源。"
    "请设置一个随机密钥（例如 `openssl rand -hex 32` 的输出，并告知平台），"
    "或明确设置 TAPWATCH_ALLOW_UNSIGNED_WEBHOOK=true 以允许不签名发送。",
    "en": "TAPWATCH_WEBHOOK_SECRET is not set: alert events would go to TAPWATCH_WEBHOOK_URL unsigned, and the "
    "platform could not tell them from forgeries. Set a random secret (e.g. the output of `openssl rand -hex 32`, "
    "shared with the platform), or set TAPWATCH_ALLOW_UNSIGNED_WEBHOOK=true to send unsigned on purpose.",
}


class UnsignedWebhookError(ValueError):
    """The webhook channel would send unsigned events and nobody allowed it."""


def _webhook_secret(s: Any) -> bytes | None:
    secret = _secret(s.webhook_secret)
    if secret is None:
        if not getattr(s, "allow_unsigned_webhook", False):
            raise UnsignedWebhookError(UNSIGNED_WEBHOOK.get(getattr(s, "language", "zh"), UNSIGNED_WEBHOOK["en"]))
        log.warning("webhook events go out UNSIGNED (TAPWATCH_ALLOW_UNSIGNED_WEBHOOK=true)")
    return secret


def _robot_url(value: Any, what: str) -> str:
    url = value if isinstance(value, str) else value.get_secret_value() if value is not None else ""
    if not url:
        raise ValueError(f"alert notifier {what.split('_')[0]!r} needs {what}")
    return require_https(url, what)  # the message names the setting, never the URL (it holds the key)


def _robot(name: str, value: Any, secret: str | None, s: Settings, what: str) -> Notifier:
    if name == "wecom":
        return WecomRobotNotifier(_robot_url(value, what), s.language, s.webhook_timeout_s)
    return DingtalkRobotNotifier(_robot_url(value, what), secret or None, s.language, s.webhook_timeout_s)


def _robots(name: str, s: Settings) -> Notifier:
    """The channel's district-wide robot, or one robot per community (with the district's as the fallback)."""
    single, per_community = getattr(s, f"{name}_robot_url"), getattr(s, f"{name}_community_robots")
    shared_secret = s.dingtalk_robot_secret.get_secret_value() if s.dingtalk_robot_secret else None
    default = _robot(name, single, shared_secret, s, f"{name}_robot_url") if single is not None else None
    if not per_community:
        if default is None:
            raise ValueError(f"alert notifier {name!r} needs {name}_robot_url or {name}_community_robots")
        return default
    robots = {}
    for community, value in per_community.items():
        url, _, secret = value.get_secret_value().strip().partition(" ")  # DingTalk: "URL SEC..." (each its own)
        what = f"{name}_community_robots[{community}]"
        robots[community] = _robot(name, url, secret or shared_secret, s, what)
    return CommunityRobots(name, robots, default)


def _build_one(name: str, s: Settings) -> Notifier:
    if name == "webhook":
        if not s.webhook_url:
            raise ValueError("alert notifier 'webhook' needs webhook_url")
        url = require_https(s.webhook_url, "webhook_url")
        return WebhookNotifier(url, _webhook_secret(s), s.webhook_timeout_s)
    if name in ROBOT_CHANNELS:
        return _robots(name, s)
    if name == "sms":
        if not s.sms_gateway_url:
            raise ValueError("alert notifier 'sms' needs sms_gateway_url")
        token = s.sms_gateway_token.get_secret_value() if s.sms_gateway_token else None
        url = require_https(s.sms_gateway_url, "sms_gateway_url")
        # Its own key: the platform's (webhook_secret) would let the gateway sign events to the platform.
        return SmsGatewayNotifier(url, token, _secret(s.sms_gateway_secret), s.webhook_timeout_s)
    login = s.mqtt_login
    return MqttNotifier(
        s.mqtt_url,
        prefix=s.mqtt_alert_prefix,
        client_id=f"{s.mqtt_client_id}-alerts",
        username=login.username,
        password=login.password,
        ca_file=login.ca_file,
    )
