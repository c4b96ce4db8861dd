"""Helpers that keep a million meters' state small in memory.

Unpickling gives every meter fresh copies of values that are the same for
almost all of them (settings, hyperparameters, constant tuples): a float is
24 bytes, a :class:`~core.thresholds.Thresholds` over 300. ``shared`` hands
out one stored copy instead, so equal immutable values cost their memory once.

>>> a, b = shared(float("1e-3")), shared(float("1e-3"))
>>> a is b
True
>>> shared(1) is shared(1.0)  # equal but of another type: kept apart
False
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: Distinct values kept; past it values are no longer shared (a bound, not a cache policy).
MAX_SHARED = 4096
_SHARED: dict[tuple[type, str], Any] = {}


def shared(value: T) -> T:
    """The one stored copy of an immutable value equal to ``value`` (same type, same ``repr``)."""
    # repr, not ==: 0.0 and -0.0 (or 1 and True) are equal but must not stand in for each other.
    key = (type(value), repr(value))
    found = _SHARED.get(key)
    if found is not None:
        return found
    if len(_SHARED) < MAX_SHARED:
        _SHARED[key] = value
    return value


def exact(values: array) -> array:
    """``values`` in a buffer of exactly its size (arrays built from bytes, as unpickling does, reserve ~10% more).

    >>> import sys
    >>> grown = array("d", bytes(8 * 24))
    >>> sys.getsizeof(exact(grown)) < sys.getsizeof(grown)
    True
    """
    return values[:]


def slot_values(obj: object, names: tuple[str, ...] | None = None) -> tuple[object, ...]:
    """A checkpoint of ``obj``: the values of its slots (or of ``names``), without the names."""
    return tuple(getattr(obj, name) for name in names or type(obj).__slots__)  # type: ignore[attr-defined]


def restore_slots(
    obj: object,
    state: object,
    names: tuple[str, ...] | None = None,
    share: frozenset[str] = frozenset(),
) -> None:
    """Set ``obj``'s slots from :func:`slot_values`; the values named in ``share`` are shared between meters.

    A checkpoint pickled before the state was compact (a dict) is refused, not misread.
    """
    names = names or type(obj).__slots__  # type: ignore[attr-defined]
    if not isinstance(state, tuple) or len(state) != len(names):
        raise ValueError(f"{type(obj).__name__}: checkpoint in an older format; start this meter afresh")
    for name, value in zip(names, state, strict=True):
        if isinstance(value, array):
            value = exact(value)
        elif name in share:
            value = shared(value)
        setattr(obj, name, value)


def with_added_slots(
    names: tuple[str, ...],
    state: tuple[object, ...],
    added: tuple[dict[str, object], ...],
    fresh: dict[str, Callable[[], object]] | None = None,
) -> tuple[object, ...]:
    """A checkpoint from before some slots were added, completed with their neutral values.

    ``added`` lists the groups of slots added since the first compact checkpoints, newest first, each with
    its value for a checkpoint that lacks it: a checkpoint lacks the first few groups. Values named in
    ``fresh`` are built anew for each checkpoint (objects that learn). Without this every meter would
    restart cold, relearning for weeks, when tapwatch is upgraded.

    >>> with_added_slots(("a", "b", "c"), (1,), ({"c": 0}, {"b": None}))
    (1, None, 0)
    >>> with_added_slots(("a", "b", "c"), (1, 2, 3), ({"c": 0},))
    (1, 2, 3)
    """
    if len(state) >= len(names):
        return state
    missing: dict[str, object] = {}
    for group in added:
        if len(state) + len(missing) >= len(names):
            break
        missing.update(group)
    for name, make in (fresh or {}).items():
        if name in missing:
            missing[name] = make()
    values = dict(zip((n for n in names if n not in missing), state, strict=True))
    return tuple(values[n] if n in values else missing[n] for n in names)
