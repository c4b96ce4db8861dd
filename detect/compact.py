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

import math
from array import array
from collections.abc import Callable, Mapping
from operator import attrgetter
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


#: Floats most meters hold in many slots (nothing learned there, nothing taught, no deadline): unpickling makes each
#: meter its own (32 bytes with the allocator's rounding, about a dozen a meter), ``common`` hands out one.
_COMMON_FLOATS = {0.0: 0.0, -1.0: -1.0, math.inf: math.inf}


def common(value: object) -> object:
    """The one stored copy of ``value`` if it is a float most meters hold (0.0, -1.0, inf), else ``value``.

    >>> common(float("0")) is common(float("0")), common(-0.0) is common(0.0)  # -0.0 == 0.0, but not the same value
    (True, False)
    """
    if type(value) is float:  # not a subclass's value
        found = _COMMON_FLOATS.get(value)
        if found is not None and (value or math.copysign(1.0, value) > 0.0):
            return found
    return value


def held_once(value: object, other: object) -> object:
    """``other`` if it is a number of ``value``'s type and value (a time both the register and a model hold), else
    ``value``: one object for both where unpickling made two.

    >>> a, b = float("1772724659"), float("1772724659")
    >>> held_once(a, b) is b, held_once(-0.0, 0.0), held_once(1, 1.0)
    (True, -0.0, 1)
    """
    if not isinstance(value, int | float) or not isinstance(other, int | float) or type(value) is not type(other):
        return value
    if value == other and (value or math.copysign(1.0, value) == math.copysign(1.0, other)):
        return other
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
    """Set ``obj``'s slots from :func:`slot_values`; the values named in ``share`` are shared between meters, and so
    is every float most meters hold (:func:`common`).

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
        else:
            value = common(value)
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


class SlotKinds:
    """What each slot of a class may hold, by slot name: the types a value of it is an instance of."""

    __slots__ = ("allowed", "by_name", "values")

    def __init__(self, by_name: dict[str, tuple[type, ...]]) -> None:
        self.by_name = by_name
        self.allowed = tuple(by_name.values())
        # Checked on every load: fetched and tested in C (a loop in Python nearly doubled a load's cost).
        self.values = attrgetter(*by_name)


_NUMBER = (int, float)  # a number is one kind: a float slot may hold an int a checkpoint wrote


def slot_kinds(template: object, learned: Mapping[str, type] | None = None) -> SlotKinds:
    """What each slot of a loaded ``template``'s class may hold: the kind a fresh ``template`` holds there, or, for a
    slot None until something is learned, None or the type ``learned`` names for it.

    >>> from array import array
    >>> class Model:
    ...     __slots__ = ("counts", "n", "since")
    ...     def __init__(self): self.counts, self.n, self.since = array("f"), 0, None
    >>> kinds = slot_kinds(Model(), {"since": float})
    >>> kinds.by_name["n"], kinds.by_name["since"]
    ((<class 'int'>, <class 'float'>), (<class 'NoneType'>, <class 'int'>, <class 'float'>))
    """
    learned = learned or {}
    kinds: dict[str, tuple[type, ...]] = {}
    for name in type(template).__slots__:  # type: ignore[attr-defined]
        value = getattr(template, name)
        if value is None:
            # A KeyError here: a new slot None until learned, without the kind it learns.
            kinds[name] = (type(None), *(_NUMBER if learned[name] in _NUMBER else (learned[name],)))
        elif isinstance(value, _NUMBER):  # bools too: a flag is read for its truth
            kinds[name] = _NUMBER
        else:
            kinds[name] = (type(value),)
    return SlotKinds(kinds)


def check_slots(obj: object, kinds: SlotKinds) -> None:
    """Raise ``ValueError`` naming the first slot of ``obj`` unset or holding another kind than ``kinds`` allows.

    A checkpoint may unpickle and still not be one this release wrote (damaged, or from a newer release's layout:
    as many values, other meanings); checked on load, it starts its meter cold, where the first reading to touch the
    odd value would have failed its batch and set the meter's readings aside as dead letters, one by one.

    >>> from array import array
    >>> class Model:
    ...     __slots__ = ("counts", "n")
    ...     def __init__(self): self.counts, self.n = array("f"), 0
    >>> kinds = slot_kinds(Model())
    >>> m = Model(); m.n = "3"
    >>> check_slots(m, kinds)
    Traceback (most recent call last):
    ...
    ValueError: Model.n holds a str, not a int or float: not a checkpoint this tapwatch wrote
    """
    try:
        if all(map(isinstance, kinds.values(obj), kinds.allowed)):
            return
    except AttributeError:
        pass  # a slot never set: named below
    for name, allowed in kinds.by_name.items():
        value = getattr(obj, name, _UNSET)
        if not isinstance(value, allowed):
            held = "nothing" if value is _UNSET else f"a {type(value).__name__}"
            wanted = " or ".join(kind.__name__ for kind in allowed)
            raise ValueError(
                f"{type(obj).__name__}.{name} holds {held}, not a {wanted}: not a checkpoint this tapwatch wrote"
            )


_UNSET = object()
