"""river's HalfSpaceTrees per meter: the peer a user of river alone would build.

Not used by the pipeline. ``tapwatch eval`` and ``bench/bench_hst.py`` run it beside
:class:`~detect.monitor.MeterMonitor` on the same intervals, to show what a generic
online anomaly detector gives on this problem (issue 9).

Per meter, a :class:`river.anomaly.HalfSpaceTrees` (river's defaults: 10 trees of
height 8, a window of 250 observations) sees one feature dict per interval, built
from what tapwatch's detectors also see: the interval's use, how long the home has
been silent, how long water has run without a break, the local hour (sin/cos) and
the local day's running total. HST wants features in known limits (``[0, 1]`` by
default) and picks split features weighted by their range, so every feature is
scaled to ``[0, 1]`` by a fixed cap (``CAPS``) and clipped; on a 150-elder check this
found more falls and taps than ``MinMaxScaler() | HalfSpaceTrees()`` at the same noise.
Every interval is scored, then learned unless it scored as anomalous (as river's
``QuantileFilter`` does by default, ``protect_anomaly_detector``).

Threshold: HST scores are relative to each home's data, so there is no fixed value
to pick. The first window only fills the trees (HST scores 0); the scores of the next
``warmup`` intervals are kept and the threshold is their ``q``-quantile (with the
defaults, about the second highest of 500). No alert is raised before that: about
16 days of half-hourly data, 31 of hourly.

Findings: an interval scoring above the threshold opens an episode whose kind follows
from the interval: silent (under 1 L) -> ``no_activity``, use continuing for an hour or
more -> ``continuous_flow``, other use -> ``high_usage``. The episode resolves when the
score returns under the threshold (or the anomaly changes kind); a kind fires again only
``cooldown_h`` after its previous alert.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np
from river import anomaly

from core.domain import Finding, Interval
from detect.monitor import USE_MIN_L

#: An interval this long or longer is the meter being offline, not data (as MeterMonitor's offline_hours default).
OFFLINE_H = 6.0
#: A run of use this long (hours) makes an anomalous interval ``continuous_flow``.
FLOW_KIND_H = 1.0
#: Value of each raw feature that maps to 1.0 (the hour's sin/cos are mapped from [-1, 1]). Volumes are
#: heavy-tailed, so they enter as log1p; 24 h of silence and 12 h of flow are past anything routine.
CAPS = {"usage": math.log1p(300.0), "silence_h": 24.0, "run_h": 12.0, "day": math.log1p(1000.0)}


class HalfSpaceTreesDetector:
    """Findings for one meter from river's HalfSpaceTrees over per-interval features.

    Parameters
    ----------
    meter_id
        The meter this detector watches.
    n_trees, height, window_size
        Passed to :class:`river.anomaly.HalfSpaceTrees` (river's defaults).
    warmup
        Scored intervals after the first window whose ``q``-quantile becomes the threshold.
    q
        Quantile of the warm-up scores used as the alert threshold.
    cooldown_h
        Hours before an alert of the same kind may fire again.
    seed
        Seed of the trees; mixed with the meter id so meters get different trees, reproducibly.

    Examples
    --------
    Four weeks of an elder who uses water at 07:00, 12:00 and 19:00, then no water at all.

    >>> from core.domain import Interval
    >>> det = HalfSpaceTreesDetector("m1", seed=1)
    >>> found, slot = [], 1800
    >>> for k in range(48 * 28):
    ...     use = 10.0 if k % 48 in (14, 24, 38) else 0.0
    ...     found += det.update(Interval("m1", k * slot, (k + 1) * slot, use, "ok", 0))
    >>> det.threshold is not None
    True
    >>> for k in range(48 * 28, 48 * 30):  # two days without water
    ...     found += det.update(Interval("m1", k * slot, (k + 1) * slot, 0.0, "ok", 0))
    >>> alert = [f for f in found if not f.resolved][-1]
    >>> alert.kind, alert.details["silence_h"], alert.ts / 3600 % 24  # hours since 19:30; at 08:00
    ('no_activity', 12.5, 8.0)
    """

    def __init__(
        self,
        meter_id: str,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        warmup: int = 500,
        q: float = 0.999,
        cooldown_h: float = 12.0,
        seed: int = 42,
    ) -> None:
        self.meter_id = meter_id
        self.warmup = warmup
        self.q = q
        self.cooldown_h = cooldown_h
        self.model = anomaly.HalfSpaceTrees(
            n_trees=n_trees, height=height, window_size=window_size, seed=seed ^ zlib.crc32(meter_id.encode())
        )
        self.window_size = window_size
        self.learned = 0  # intervals learned; HST scores 0 until its first window is full
        self._warm_scores: list[float] | None = []  # None once the threshold is set
        self.threshold: float | None = None
        # Feature state.
        self.silent_since: float | None = None  # start of the current silence (None: use or unknown)
        self.run_since: float | None = None  # start of the current run of use
        self.day = -1
        self.day_l = 0.0
        # Episode state.
        self.open: str | None = None
        self.last_alert: dict[str, float] = {}

    # ------------------------------------------------------------------ river API
    def features(self, x: Interval) -> dict[str, float]:
        """The feature dict (each in [0, 1]) of an interval with known use; advances the silence, run and day state."""
        u = x.usage_l or 0.0
        local_s = (x.end - 1.0 + x.utc_offset_s) % 86400.0
        day = int((x.end - 1.0 + x.utc_offset_s) // 86400)
        # Only forward: a zone moved west takes the local day back, and the day before was closed already.
        if day > self.day:
            self.day, self.day_l = day, 0.0
        self.day_l += u
        if u >= USE_MIN_L:
            self.silent_since = None
            if self.run_since is None:
                self.run_since = x.start
        else:
            self.run_since = None
            if self.silent_since is None:
                self.silent_since = x.start
        angle = 2.0 * math.pi * local_s / 86400.0
        silence_h = 0.0 if self.silent_since is None else (x.end - self.silent_since) / 3600.0
        run_h = 0.0 if self.run_since is None else (x.end - self.run_since) / 3600.0
        return {
            "usage": _capped(math.log1p(u), CAPS["usage"]),
            "silence_h": _capped(silence_h, CAPS["silence_h"]),
            "run_h": _capped(run_h, CAPS["run_h"]),
            "hour_sin": 0.5 + 0.5 * math.sin(angle),
            "hour_cos": 0.5 + 0.5 * math.cos(angle),
            "day": _capped(math.log1p(self.day_l), CAPS["day"]),
        }

    def update(self, x: Interval) -> list[Finding]:
        """Score one interval, learn it unless anomalous, and return the findings it raises."""
        if x.usage_l is None or x.end - x.start >= OFFLINE_H * 3600.0:
            # Missing data is not silence (nor use): restart the clocks, score nothing.
            self.silent_since = self.run_since = None
            return []
        feats = self.features(x)
        score = self.model.score_one(feats)
        anomalous = self.threshold is not None and score > self.threshold
        if not anomalous:
            self.model.learn_one(feats)
            self.learned += 1
        self._warm_up(score)
        return self._episode(x, feats, score, anomalous)

    def tick(self, now: float) -> list[Finding]:
        """No clock-driven checks: HST only sees data."""
        return []

    # ------------------------------------------------------------------ threshold and episodes
    def _warm_up(self, score: float) -> None:
        scores = self._warm_scores
        if scores is None or self.learned <= self.window_size:
            return  # threshold set, or the score came from trees still filling their first window (it is 0)
        scores.append(score)
        if len(scores) >= self.warmup:
            self.threshold = float(np.quantile(scores, self.q))
            self._warm_scores = None

    def _episode(self, x: Interval, feats: dict[str, float], score: float, anomalous: bool) -> list[Finding]:
        kind = self._kind(feats) if anomalous else None
        out: list[Finding] = []
        if self.open is not None and self.open != kind:
            out.append(self._finding(x, self.open, score, resolved=True))
            self.open = None
        if (
            kind is not None
            and self.open is None
            and x.end - self.last_alert.get(kind, -math.inf) >= self.cooldown_h * 3600
        ):
            self.open = kind
            self.last_alert[kind] = x.end
            out.append(self._finding(x, kind, score, since=self._since(kind, x)))
        return out

    @staticmethod
    def _kind(feats: dict[str, float]) -> str:
        if feats["silence_h"] > 0.0:
            return "no_activity"
        if feats["run_h"] >= FLOW_KIND_H / CAPS["run_h"]:
            return "continuous_flow"
        return "high_usage"

    def _since(self, kind: str, x: Interval) -> float:
        began = {"no_activity": self.silent_since, "continuous_flow": self.run_since}.get(kind)
        return x.start if began is None else began

    def _finding(
        self, x: Interval, kind: str, score: float, since: float | None = None, resolved: bool = False
    ) -> Finding:
        if resolved:
            en, zh = "Anomaly score back to normal.", "异常分数恢复正常。"
        else:
            en = f"HalfSpaceTrees anomaly score {score:.3f} over this home's threshold {self.threshold:.3f}."
            zh = f"HalfSpaceTrees 异常分数 {score:.3f}，高于该户阈值 {self.threshold:.3f}。"
        details: dict[str, Any] = {"score": round(score, 4), "threshold": self.threshold}
        if since is not None and kind == "no_activity":
            details["silence_h"] = round((x.end - since) / 3600.0, 1)
        return Finding(self.meter_id, kind, "high", x.end, zh, en, "learned", since, score, details, resolved=resolved)


def _capped(value: float, cap: float) -> float:
    return min(value / cap, 1.0)
