"""Fixed rules used by real deployments, as baselines and as safety nets.

Each rule has the same ``update(interval) -> list[Finding]`` shape as
:class:`~detect.monitor.MeterMonitor`, so ``tapwatch eval`` replays them side by side.
``FIXED_RULES`` names the deployments' rule sets.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

from core.domain import Finding, Interval
from detect import messages
from detect.compact import restore_slots, slot_values


def _hm(ts: float, offset: int) -> str:
    seconds = int(ts + offset) % 86400
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


#: Uses within the same stretch of this many seconds of the clock share the window's entry: a meter read every
#: second that drips a millilitre a reading held an entry per second (10,000, 160 kB of checkpoint, until the newer
#: ones alone reached the litres; a day's worth under a slower drip). The rule counts litres over hours: five minutes
#: are nothing to it, and a meter read every quarter hour or less often keeps an entry per reading.
MERGE_S = 300.0


class LowUseWindowRule:
    """Alert ``no_activity`` when under ``litres`` were used in the last ``hours``.

    The Shanghai rule is ``LowUseWindowRule(12, 10)``; Taicang's is ``(24, 10)``.
    Unknown intervals (register faults) reset the window: missing data is not
    silence. The alert fires once per silence and clears when use resumes.

    >>> from core.domain import Interval
    >>> rule = LowUseWindowRule(hours=12, litres=10)
    >>> out = []
    >>> for k in range(30):  # 15 h without water
    ...     out += rule.update(Interval("m", k * 1800, (k + 1) * 1800, 0.0, "ok", 0))
    >>> [(f.kind, f.ts / 3600) for f in out]
    [('no_activity', 12.0)]
    >>> [f.resolved for f in rule.update(Interval("m", 54000, 55800, 6.0, "ok", 0))]
    [True]
    """

    __slots__ = ("_alerting", "_covered_from", "_window", "_window_l", "hours", "litres")

    def __init__(self, hours: float = 12.0, litres: float = 10.0) -> None:
        self.hours = hours
        self.litres = litres
        # Only intervals with use are kept: silent ones add nothing to the sum, so a long
        # silence costs one comparison per interval. Flat (end, usage) pairs, oldest first,
        # in a float array: it holds a few entries, and an empty deque alone is 600 bytes.
        self._window = array("d")
        self._window_l = 0.0
        self._covered_from: float | None = None  # start of the known data in view
        self._alerting = False

    def __getstate__(self) -> tuple[object, ...]:
        return slot_values(self)

    def __setstate__(self, state: tuple[object, ...]) -> None:
        restore_slots(self, state, share=frozenset(("hours", "litres")))

    def reset(self) -> None:
        """Start counting afresh (unknown data, or the episode was closed elsewhere)."""
        del self._window[:]
        self._window_l = 0.0
        self._covered_from = None
        self._alerting = False

    def unchanged_by_silence(self, end: float) -> bool:
        """Whether an interval without use ending at ``end`` would change nothing and raise nothing.

        The common cases, answered without the update: recent use still fills the window (nothing
        leaves it, the limit is not reached), or the window is empty and the episode is already
        open or not yet long enough. The monitor inlines this test: keep the two the same.
        """
        window = self._window
        if window:
            return not self._alerting and self._window_l >= self.litres and window[0] > end - self.hours * 3600
        covered = self._covered_from
        return covered is not None and (self._alerting or end - covered < self.hours * 3600)

    def update(self, x: Interval) -> list[Finding]:
        u = x.usage_l
        window = self._window
        end = x.end
        if u == 0.0 and self.unchanged_by_silence(end):
            return []
        if u is None:  # unknown stretch: start counting afresh
            self.reset()
            return []
        covered = self._covered_from
        if covered is None:
            covered = self._covered_from = x.start
        # The sum in a local (the same additions in the same order): this runs for every use of every meter.
        litres, total = self.litres, self._window_l
        if u > 0.0:
            if window and end // MERGE_S == window[-2] // MERGE_S:
                # In the same five minutes as the last use: one entry with it, kept until this one leaves.
                window[-2] = end
                window[-1] += u
            else:
                window.append(end)
                window.append(u)
            total += u
            # Older uses cannot matter while the newer ones alone reach the limit: the
            # window stays a few entries long (small checkpoints, cheap updates).
            while len(window) > 2 and total - window[1] >= litres:
                total -= window[1]
                del window[:2]
        span = self.hours * 3600
        if window:
            cutoff = end - span
            while window and window[0] <= cutoff:
                total -= window[1]
                del window[:2]
        if not window:
            total = 0.0  # no drift from float sums
        self._window_l = total
        if not self._alerting:
            if total < litres and end - covered >= span:
                self._alerting = True
                return [self._finding(x)]
        elif u >= 1.0:
            self._alerting = False
            return [self._finding(x, resolved=True)]
        return []

    def _finding(self, x: Interval, resolved: bool = False) -> Finding:
        if resolved:
            zh = f"{_hm(x.end, x.utc_offset_s)} 前恢复用水（{x.usage_l:.0f} 升）。"
            en = f"Water use resumed before {_hm(x.end, x.utc_offset_s)} ({x.usage_l:.0f} L)."
            return Finding(x.meter_id, "no_activity", "high", x.end, zh, en, "rule", resolved=True)
        zh, en = messages.no_activity_rule(self.hours, self.litres, self._window_l)
        return Finding(
            x.meter_id,
            "no_activity",
            "high",
            x.end,
            zh,
            en,
            "rule",
            since=x.end - self.hours * 3600,
            details={"rule": f"under {self.litres:g} L in {self.hours:g} h", "litres": self._window_l},
        )


class NoUseRule:
    """Nagano/Sakaki: ``no_activity`` when no water at all was used for ``hours``.

    >>> from core.domain import Interval
    >>> rule = NoUseRule(hours=8)
    >>> out = []
    >>> for k in range(20):
    ...     out += rule.update(Interval("m", k * 1800, (k + 1) * 1800, 0.0, "ok", 0))
    >>> [(f.kind, f.ts / 3600) for f in out]
    [('no_activity', 8.0)]
    """

    def __init__(self, hours: float = 8.0, min_l: float = 1.0) -> None:
        self.hours = hours
        self.min_l = min_l
        self._since: float | None = None
        self._alerting = False

    def update(self, x: Interval) -> list[Finding]:
        if x.usage_l is None:
            self._since, self._alerting = None, False
            return []
        if x.usage_l >= self.min_l:
            self._since = x.end
            if self._alerting:
                self._alerting = False
                return [_rule_finding(x, "no_activity", "Water use resumed.", "恢复用水。", resolved=True)]
            return []
        if self._since is None:
            self._since = x.start
        if not self._alerting and x.end - self._since >= self.hours * 3600:
            self._alerting = True
            en = f"No water used for {self.hours:g} h."
            return [_rule_finding(x, "no_activity", en, f"{self.hours:g} 小时未用水。", since=self._since)]
        return []


class ContinuousUseRule:
    """Nagano/Sakaki and Pudong: ``continuous_flow`` when use continues in every interval for ``hours``.

    >>> from core.domain import Interval
    >>> rule = ContinuousUseRule(hours=2)
    >>> out = []
    >>> for k in range(6):
    ...     out += rule.update(Interval("m", k * 1800, (k + 1) * 1800, 3.0, "ok", 0))
    >>> [(f.kind, f.ts / 3600) for f in out]
    [('continuous_flow', 2.0)]
    """

    def __init__(self, hours: float = 2.0, min_l: float = 1.0) -> None:
        self.hours = hours
        self.min_l = min_l
        self._since: float | None = None
        self._alerting = False

    def update(self, x: Interval) -> list[Finding]:
        if x.usage_l is None or x.usage_l < self.min_l:
            self._since = None
            if self._alerting and x.usage_l is not None:
                self._alerting = False
                return [_rule_finding(x, "continuous_flow", "Flow stopped.", "用水停止。", resolved=True)]
            return []
        if self._since is None:
            self._since = x.start
        if not self._alerting and x.end - self._since >= self.hours * 3600:
            self._alerting = True
            en = f"Water used without a break for {self.hours:g} h."
            return [_rule_finding(x, "continuous_flow", en, f"连续用水 {self.hours:g} 小时。", since=self._since)]
        return []


class AllSlotsRule:
    """Shenzhen Longgang: suspected leak when every slot of the last ``hours`` shows use.

    >>> from core.domain import Interval
    >>> rule = AllSlotsRule(hours=24)
    >>> out = []
    >>> for k in range(50):
    ...     out += rule.update(Interval("m", k * 1800, (k + 1) * 1800, 2.0, "ok", 0))
    >>> [(f.kind, f.ts / 3600) for f in out]
    [('continuous_flow', 24.0)]
    """

    def __init__(self, hours: float = 24.0, min_l: float = 1.0) -> None:
        self._inner = ContinuousUseRule(hours, min_l)

    def update(self, x: Interval) -> list[Finding]:
        return self._inner.update(x)


class DayBoundsRule:
    """Shanghai Jing'an (Daning): a local day's use under ``low_l`` or over ``high_l``.

    >>> from core.domain import Interval
    >>> rule = DayBoundsRule()
    >>> out = []
    >>> for k in range(96):  # two days: 3 L, then 2,400 L
    ...     out += rule.update(Interval("m", k * 1800, (k + 1) * 1800, 3.0 / 48 if k < 48 else 50.0, "ok", 0))
    >>> out += rule.update(Interval("m", 96 * 1800, 97 * 1800, 0.0, "ok", 0))
    >>> [(f.kind, f.ts / 3600) for f in out]
    [('low_usage', 24.5), ('high_usage', 48.5)]
    """

    def __init__(self, low_l: float = 10.0, high_l: float = 2000.0, min_known_h: float = 20.0) -> None:
        self.low_l = low_l
        self.high_l = high_l
        self.min_known_h = min_known_h
        self._day = -1
        self._total = 0.0
        self._known = 0.0

    def update(self, x: Interval) -> list[Finding]:
        day = int((x.end - 1.0 + x.utc_offset_s) // 86400)
        out: list[Finding] = []
        if day != self._day:
            if self._day >= 0 and self._known >= self.min_known_h * 3600:
                if self._total < self.low_l:
                    out.append(
                        _rule_finding(
                            x, "low_usage", f"Day total {self._total:.0f} L.", f"日用水 {self._total:.0f} 升。"
                        )
                    )
                elif self._total > self.high_l:
                    out.append(
                        _rule_finding(
                            x, "high_usage", f"Day total {self._total:.0f} L.", f"日用水 {self._total:.0f} 升。"
                        )
                    )
            self._day, self._total, self._known = day, 0.0, 0.0
        if x.usage_l is not None:
            self._total += x.usage_l
            self._known += x.end - x.start
        return out


class RuleSet:
    """Several rules on one meter, as one detector.

    >>> from core.domain import Interval
    >>> nagano = RuleSet([NoUseRule(8), ContinuousUseRule(2)])
    >>> len(nagano.update(Interval("m", 0, 1800, 0.0, "ok", 0)))
    0
    """

    def __init__(self, rules: list[Any]) -> None:
        self.rules = rules

    def update(self, x: Interval) -> list[Finding]:
        out: list[Finding] = []
        for rule in self.rules:
            out += rule.update(x)
        return out


def _rule_finding(
    x: Interval, kind: str, en: str, zh: str, since: float | None = None, resolved: bool = False
) -> Finding:
    return Finding(x.meter_id, kind, "high", x.end, zh, en, "rule", since=since, resolved=resolved)


#: The deployments' rules as detector factories, for ``tapwatch eval``.
FIXED_RULES: dict[str, Callable[[], Any]] = {
    "shanghai_12h": lambda: LowUseWindowRule(12, 10),
    "taicang_24h": lambda: LowUseWindowRule(24, 10),
    "nagano_8h_2h": lambda: RuleSet([NoUseRule(8), ContinuousUseRule(2)]),
    "jingan_day": lambda: DayBoundsRule(10, 2000),
    "longgang_leak": lambda: AllSlotsRule(24),
}
