"""``tapwatch report``: a district's own false calls per elder-month, from its cadres' outcomes (issue 17).

The same figures as ``GET /reports/outcomes`` (one function serves both:
:func:`alerts.queries.outcome_report`), for the cases raised in the last
``--days`` days, per community and in total, then by kind; ``--json`` prints the
API's response body. Words in ``TAPWATCH_LANGUAGE`` (Simplified Chinese by default).
Compare "false calls /elder-month" with ``tapwatch eval``'s false community alerts
per elder-month (docs/detection.md, "Measuring it live").
"""

from __future__ import annotations

import argparse
import time
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from alerts.messages import kind_label
from alerts.queries import outcome_report
from api.models import OutcomeReport, to_dt
from core.settings import get_settings
from store import open_store
from store.users import unknown_communities_problem
from tapwatch.usercli import require_existing_sqlite

#: Column headings: (zh, en).
HEADINGS: dict[str, tuple[str, str]] = {
    "community": ("社区", "community"),
    "elders": ("老人", "elders"),
    "elder_months": ("老人·月", "elder-months"),
    "community_cases": ("社区提醒", "community cases"),
    "community_rate": ("/老人·月", "/elder-month"),
    "false_calls": ("误报", "false calls"),
    "false_rate": ("误报/老人·月", "false /elder-month"),
    "confirmed": ("确有其事", "confirmed"),
    "confirmed_rate": ("确有/老人·月", "confirmed /elder-month"),
    "away": ("外出", "away"),
    "closed_by_data": ("数据关闭", "closed by data"),
    "open": ("未结", "open"),
    "maintenance": ("维修", "maintenance"),
    "maintenance_rate": ("/表·月", "/meter-month"),
    "acknowledge": ("确认用时 中位/p90 分", "ack median/p90 min"),
    "resolve": ("处理用时 中位/p90 分", "resolve median/p90 min"),
    "kind": ("类型", "kind"),
    "outcomes": ("结果", "outcomes"),
}
#: The columns of the main table, one row per community and the total.
ROW_KEYS = tuple(HEADINGS)[:16]
#: Outcome names: (zh, en).
OUTCOME_WORDS: dict[str, tuple[str, str]] = {
    "needed_help": ("需要帮助", "needed help"),
    "hospital": ("送医", "hospital"),
    "ok": ("平安", "ok"),
    "false_alarm": ("误报", "false alarm"),
    "away": ("外出", "away"),
    "device_fault": ("设备故障", "device fault"),
    "closed_by_data": ("数据关闭", "closed by data"),
    "open": ("未结", "open"),
}
TITLE = (
    "近 {days} 天提醒的处理结果（{start} 至 {end}）",
    "Outcomes of the cases raised in the last {days} days ({start} to {end})",
)
TOTAL = ("合计", "total")
#: Each language's own brackets and colon: full-width in Chinese, as every text a cadre reads.
BY_KIND = ("按类型（合计）：", "by kind (total):")
NOTHING = ("没有可查看的社区。", "No community to show.")


def _word(pair: tuple[str, str], language: str) -> str:
    return pair[0] if language == "zh" else pair[1]


def _width(text: str) -> int:
    """Columns a terminal gives ``text``: Chinese characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain text table, first column left-aligned, the others right-aligned."""
    widths = [max(_width(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = []
        for i, cell in enumerate(row):
            pad = " " * (widths[i] - _width(cell))
            cells.append(cell + pad if i == 0 else pad + cell)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if value is None else fmt.format(value)


def _timing(timing: dict[str, Any]) -> str:
    if not timing["count"]:
        return "–"
    return f"{_num(timing['median_min'], '{:.0f}')}/{_num(timing['p90_min'], '{:.0f}')}"


def _row(name: str, f: dict[str, Any]) -> list[str]:
    mix = f["outcomes"]
    return [
        name,
        str(f["elders"]),
        f"{f['elder_months']:.1f}",
        str(f["community_cases"]),
        _num(f["community_cases_per_elder_month"]),
        str(f["false_calls"]),
        _num(f["false_calls_per_elder_month"]),
        str(f["confirmed"]),
        _num(f["confirmed_per_elder_month"]),
        str(mix["away"]),
        str(mix["closed_by_data"]),
        str(mix["open"]),
        str(f["maintenance_cases"]),
        _num(f["maintenance_cases_per_meter_month"]),
        _timing(f["acknowledge"]),
        _timing(f["resolve"]),
    ]


def _local(iso: str, tz: str) -> str:
    """``YYYY-MM-DD HH:MM`` of an ISO time in ``tz``."""
    return datetime.fromisoformat(iso).astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M")


def render(report: dict[str, Any], language: str, tz: str = "Asia/Shanghai") -> str:
    """The report as text: a title, one row per community and the total, then the total by kind."""
    start, end = (_local(report[k], tz) for k in ("start", "end"))
    title = _word(TITLE, language).format(days=report["days"], start=start, end=end)
    if not report["communities"]:
        return f"{title}\n{_word(NOTHING, language)}"
    rows = [_row(c["community"], c) for c in report["communities"]]
    rows.append(_row(_word(TOTAL, language), report["total"]))
    main = _table([_word(HEADINGS[k], language) for k in ROW_KEYS], rows)
    kind_rows = []
    for k in report["total"]["by_kind"]:
        mix = ", ".join(f"{_word(OUTCOME_WORDS[o], language)} {n}" for o, n in k["outcomes"].items() if n)
        kind_rows.append(
            [
                kind_label(k["kind"], language),
                str(k["community_cases"]),
                str(k["maintenance_cases"]),
                _timing(k["acknowledge"]),
                _timing(k["resolve"]),
                mix or "–",
            ]
        )
    kind_keys = ("kind", "community_cases", "maintenance", "acknowledge", "resolve", "outcomes")
    kinds = _table([_word(HEADINGS[k], language) for k in kind_keys], kind_rows) if kind_rows else "–"
    return f"{title}\n\n{main}\n\n{_word(BY_KIND, language)}\n{kinds}"


def build_report(conn: Any, days: int, community: str | None, now: float) -> OutcomeReport:
    """The API's response model for the last ``days`` days (every community, or one)."""
    since = now - days * 86400.0
    data = outcome_report(conn, since, now, None if community is None else [community])
    return OutcomeReport(
        days=days, start=to_dt(since), end=to_dt(now), communities=data["communities"], total=data["total"]
    )


def cmd_report(args: argparse.Namespace) -> int:
    settings = get_settings()
    # A new, empty store would be reported as "no community to show", as if nothing had happened.
    require_existing_sqlite(settings.effective_database_url)
    engine = open_store(settings.effective_database_url)
    try:
        with engine.connect() as conn:
            # A name no elder has would be reported as "no community to show", as if it had had no cases.
            if args.community is not None and (unknown := unknown_communities_problem(conn, [args.community])):
                raise ValueError(unknown)
            report = build_report(conn, args.days, args.community, time.time())
    finally:
        engine.dispose()
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(render(report.model_dump(mode="json"), settings.language, settings.timezone))
    return 0


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of days: {text!r}") from None
    if not 1 <= days <= 365:
        raise argparse.ArgumentTypeError(f"days must be 1..365, got {days}")
    return days


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="Print what the cadres found on the cases raised: false calls per elder-month, per community.",
        description="The outcomes of the cases raised in the last days, per community and in total, as "
        "GET /reports/outcomes gives them (words in TAPWATCH_LANGUAGE).",
    )
    p.add_argument("--days", type=_days, default=30, help="cases raised in this many days up to now (1..365; 30)")
    p.add_argument("--community", help="only this community (one no elder belongs to is refused, naming the closest)")
    p.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    p.set_defaults(func=cmd_report)
