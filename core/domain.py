"""Records that flow ingest -> detect -> alerts, and the fixed vocabularies."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

ALERT_KINDS: Final = (
    "no_activity",
    "continuous_flow",
    "high_usage",
    "low_usage",
    "routine_change",
    "meter_offline",
    "meter_fault",
)
#: Kinds that go to the water utility's maintenance, not to community cadres.
DEVICE_KINDS: Final = frozenset({"meter_offline", "meter_fault"})
#: A finding's route (``Finding.route``): a cadre must act now, or the meter or the plumbing needs fixing.
COMMUNITY: Final = "community"
MAINTENANCE: Final = "maintenance"
#: A resolved finding's details key: the detector withdrew the alert it closes (the value says why, e.g. a
#: misread reading): nothing happened, so no cadre visits it (replay and eval drop its visit).
WITHDRAWN: Final = "withdrawn"

SEVERITIES: Final = ("critical", "high", "medium", "low")

#: Interval statuses. Only ``ok`` and ``gap`` carry a usage; the others are
#: unknown (neither use nor non-use) because the register misbehaved.
INTERVAL_OK: Final = "ok"
INTERVAL_GAP: Final = "gap"  # readings too far apart: volume known, timing not
INTERVAL_RESET: Final = "reset"  # register restarted or jumped to a new level
INTERVAL_GLITCH: Final = "glitch"  # a reading off by an impossible amount


class Interval(NamedTuple):
    """Water used between two consecutive readings of one meter.

    ``usage_l`` is ``None`` when the register misbehaved (reset, glitch): the
    interval is then unknown, never counted as use or as silence.

    A named tuple, not a frozen dataclass: every reading of every meter makes
    one, and a frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``, which cost as much as the rest of the register step.
    It is as immutable, compares and pickles by value, and ``_replace`` makes a
    changed copy.

    >>> x = Interval("m1", 0.0, 1800.0, 12.0, INTERVAL_OK, 0)
    >>> x.hours, x.usage_l
    (0.5, 12.0)
    >>> x._replace(usage_l=None).status
    'ok'
    """

    meter_id: str
    start: float
    end: float
    usage_l: float | None
    status: str
    utc_offset_s: int = 8 * 3600

    @property
    def hours(self) -> float:
        return (self.end - self.start) / 3600.0


@dataclass(slots=True)
class Finding:
    """What a detector concluded about one meter at one data time.

    ``resolved`` findings say the condition has cleared (for example water use
    resumed after ``no_activity``) and close the open alert of that kind.
    """

    meter_id: str
    kind: str
    severity: str
    ts: float  # data time at which the finding is made
    message_zh: str
    message_en: str
    basis: str = "rule"  # "learned", "prior" (cold start) or "rule"
    since: float | None = None  # when the condition began, if known
    score: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)
    resolved: bool = False
    #: Who must act: ``community`` (a cadre, now) or ``maintenance`` (device faults, offline meters, a slow leak).
    route: str = ""

    def __post_init__(self) -> None:
        if not self.route:
            self.route = MAINTENANCE if self.kind in DEVICE_KINDS else COMMUNITY


#: Unicode categories never accepted in names and free text: controls, format characters (zero-width,
#: bidi overrides and isolates, BOM), surrogates, private use, and line or paragraph separators.
_HIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})


def hidden_character(text: str, *, multiline: bool = False) -> str | None:
    r"""The first character of ``text`` that would hide or reorder what a reader sees, or ``None``.

    Zero-width and right-to-left override characters in a name flow into platform
    work orders and SMS, where they disguise who is meant. Ordinary spaces are
    allowed; tabs and line breaks only when ``multiline`` (notes, reasons).

    >>> hidden_character("张秀英"), hidden_character("Zhang Xiuying")
    (None, None)
    >>> hidden_character("张\u200b秀英"), hidden_character("abc\u202edcba")
    ('U+200B', 'U+202E')
    >>> hidden_character("line one\nline two"), hidden_character("line one\nline two", multiline=True)
    ('U+000A', None)
    """
    allowed = "\t\n\r" if multiline else ""
    for char in text:
        if char not in allowed and unicodedata.category(char) in _HIDDEN_CATEGORIES:
            return f"U+{ord(char):04X}"
    return None


def check_plain_text(text: str, *, multiline: bool = False) -> str:
    """``text`` unchanged, or ``ValueError`` naming the hidden character (for the API, the CLI, registration)."""
    found = hidden_character(text, multiline=multiline)
    if found is not None:
        raise ValueError(f"control or invisible formatting character {found} is not allowed")
    return text


def severity_rank(severity: str) -> int:
    """0 for the most severe; a severity not in :data:`SEVERITIES` ranks below them all.

    >>> severity_rank("critical"), severity_rank("low"), severity_rank("unheard of")
    (0, 3, 4)
    """
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


def gravest_first(findings: list[Finding]) -> list[Finding]:
    """``findings`` with those raised reordered most severe first (stably), the clears left where they are,
    and so the raises of a kind the list also clears.

    >>> found = [Finding("M1", "routine_change", "low", 9.0, "", ""), Finding("M1", "continuous_flow", "high", 9.0,
    ...          "", "", resolved=True), Finding("M1", "no_activity", "high", 9.0, "", "")]
    >>> [(f.kind, f.resolved) for f in gravest_first(found)]
    [('no_activity', False), ('continuous_flow', True), ('routine_change', False)]
    >>> outage = [Finding("M1", "meter_offline", "low", 5.0, "", ""), Finding("M1", "meter_offline", "low", 9.0, "",
    ...           "", resolved=True), Finding("M1", "no_activity", "high", 9.0, "", "")]
    >>> [(f.kind, f.resolved) for f in gravest_first(outage)]
    [('meter_offline', False), ('meter_offline', True), ('no_activity', False)]
    """
    # A kind cleared in the same reading keeps its place: moved past its own clear, a raise would open a case
    # after the clear, which nothing closes (an outage's meter_offline, raised and cleared by the reading after).
    cleared = {f.kind for f in findings if f.resolved}
    raised = [k for k, f in enumerate(findings) if not f.resolved and f.kind not in cleared]
    if len(raised) < 2:
        return findings
    ordered = sorted((findings[k] for k in raised), key=lambda f: severity_rank(f.severity))
    out = list(findings)
    for k, f in zip(raised, ordered, strict=True):
        out[k] = f
    return out
