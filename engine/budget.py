"""How many dead letters one source may leave: a hostile or broken meter must not fill the store's disk.

Every dead letter keeps its payload (up to 8 KiB) for 90 days. One meter account publishing junk as fast as
the broker takes it (hundreds of messages a second) would fill the disk within days, and a full disk stops
intake for the whole city. So each source (an MQTT topic: one meter's account, as the broker's ACL gives it)
has a token bucket: ``burst`` letters at once, refilled at ``per_hour``; every source together has another.
A letter over budget is not kept but counted, and the next letter kept from that source says how many of
its own were not (in its reason), so the dead-letter page still shows what the meter sends and how much.

The budget is charged only when the batch's transaction commits (:meth:`DeadLetterBudget.charge`): a batch
run again after a lost race, or split to isolate a message the store refused, is not charged twice.

>>> budget = DeadLetterBudget(burst=2, per_hour=60)
>>> topic, batch = "tapwatch/meters/M1/readings", Spending()
>>> [budget.allows(topic, 0.0, batch) for _ in range(3)]  # kept (none skipped before), kept, not kept
[0, 0, None]
>>> budget.charge(batch, 0.0)
>>> batch = Spending()
>>> budget.allows(topic, 30.0, batch)  # half a minute: half a letter back, not enough
>>> budget.charge(batch, 30.0)
>>> budget.skipped(topic)
2
>>> budget.allows(topic, 60.0, Spending())  # a minute: one letter back, and it says 2 before it were not kept
2
>>> with_not_kept("invalid JSON", 2)
'invalid JSON (and 2 earlier from this source not kept: over its dead-letter budget)'

A retained message the broker replays after every reconnect is kept once (engine.pipeline); its replay must be
recognised whether the letter kept says a count or not:

>>> kept_for(with_not_kept("invalid JSON", 2), "invalid JSON"), kept_for("invalid JSON", "invalid JSON")
(True, True)
>>> kept_for(with_not_kept("invalid JSON", 2), "unknown meter"), kept_for(with_not_kept("x" * 500, 7), "x" * 500)
(False, True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

#: Sources followed at most; past it, the one unused the longest is forgotten.
MAX_SOURCES = 10_000
#: Every source together may leave this many times one source's budget, unless told otherwise.
TOTAL_FACTOR = 20
#: The longest reason a dead letter keeps (store.schema.dead_letters.reason).
REASON_MAX = 512

_NOT_KEPT = " (and {} earlier from this source not kept: over its dead-letter budget)"
_NOT_KEPT_AT_END = re.compile(re.escape(_NOT_KEPT).replace(r"\{\}", r"\d+") + r"\Z")
#: A SQL LIKE pattern for reasons that may end in a count of letters not kept (:func:`kept_for` decides).
NOT_KEPT_LIKE = "%" + _NOT_KEPT.format("%")


def with_not_kept(reason: str, earlier: int) -> str:
    """``reason`` saying that ``earlier`` letters of its source before it were not kept.

    The count is kept whole and the reason cut to make room: :func:`kept_for` must find the reason again.
    """
    note = _NOT_KEPT.format(earlier)
    return reason[: REASON_MAX - len(note)] + note


def kept_for(stored: str, reason: str) -> bool:
    """Whether a letter kept with the reason ``stored`` was kept for one whose reason is ``reason``.

    It was if ``stored`` is that reason, or that reason with a count of letters not kept (:func:`with_not_kept`).
    """
    if stored == reason:
        return True
    note = _NOT_KEPT_AT_END.search(stored)
    return note is not None and stored[: note.start()] == reason[: REASON_MAX - len(note.group())]


@dataclass(slots=True)
class Spend:
    """What one batch did with a source's budget: letters kept, and letters not kept since the last kept one."""

    kept: int = 0
    skipped: int = 0  # since the batch's last kept letter of the source
    not_kept: int = 0  # in the whole batch


@dataclass(slots=True)
class Spending:
    """One batch's use of the budget, per source and in total (charged when the batch commits)."""

    by_source: dict[str, Spend] = field(default_factory=dict)
    kept: int = 0

    @property
    def not_kept(self) -> int:
        return sum(spend.not_kept for spend in self.by_source.values())


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float
    skipped: int = 0  # letters not kept since the source's last kept letter


class DeadLetterBudget:
    """Token buckets of dead letters per source and in total (by default :data:`TOTAL_FACTOR` times a source's);
    see the module docstring."""

    def __init__(
        self,
        burst: int = 100,
        per_hour: float = 60.0,
        total_burst: int | None = None,
        total_per_hour: float | None = None,
    ) -> None:
        self.burst, self.rate = float(burst), per_hour / 3600.0
        self.total_burst = float(TOTAL_FACTOR * burst if total_burst is None else total_burst)
        self.total_rate = (TOTAL_FACTOR * per_hour if total_per_hour is None else total_per_hour) / 3600.0
        self.total = _Bucket(self.total_burst, 0.0)
        self._sources: dict[str, _Bucket] = {}

    def allows(self, source: str, now: float, spending: Spending) -> int | None:
        """May one more letter of ``source`` be kept, given this batch's ``spending``? Records the answer.

        None if not; else how many of the source's letters were not kept before this one (to say so in it).
        """
        spend = spending.by_source.setdefault(source, Spend())
        bucket = self._sources.get(source)
        mine = self._refilled(bucket, self.burst, self.rate, now) if bucket is not None else self.burst
        everyone = self._refilled(self.total, self.total_burst, self.total_rate, now)
        if mine < spend.kept + 1 or everyone < spending.kept + 1:
            spend.skipped += 1
            spend.not_kept += 1
            return None
        earlier = spend.skipped + (bucket.skipped if bucket is not None and spend.kept == 0 else 0)
        spend.kept += 1
        spending.kept += 1
        spend.skipped = 0
        return earlier

    def skipped(self, source: str) -> int:
        """Letters of ``source`` not kept since its last kept one (committed batches only)."""
        bucket = self._sources.get(source)
        return bucket.skipped if bucket is not None else 0

    def charge(self, spending: Spending, now: float) -> None:
        """A batch committed: take what it kept from the buckets and remember what it did not keep."""
        sources = self._sources
        for source, spend in spending.by_source.items():
            # Taken out and put back: the dict's order is then the sources' order of last use.
            bucket = sources.pop(source, None) or _Bucket(self.burst, now)
            bucket.tokens = self._refilled(bucket, self.burst, self.rate, now) - spend.kept
            bucket.at = now
            bucket.skipped = spend.skipped if spend.kept else bucket.skipped + spend.skipped
            sources[source] = bucket
        self.total.tokens = self._refilled(self.total, self.total_burst, self.total_rate, now) - spending.kept
        self.total.at = now
        while len(sources) > MAX_SOURCES:
            # Bounded memory, also against junk on ever new topics: the source unused the longest is forgotten
            # (its count of letters not kept stays in the metric only).
            del sources[next(iter(sources))]

    def __len__(self) -> int:
        return len(self._sources)

    @staticmethod
    def _refilled(bucket: _Bucket, burst: float, rate: float, now: float) -> float:
        return min(burst, bucket.tokens + max(now - bucket.at, 0.0) * rate)
