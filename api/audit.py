"""The audit trail, as routes write it: :func:`tapwatch.store.audit.record` (the one writer)."""

from __future__ import annotations

from tapwatch.store.audit import record

__all__ = ["record"]
