"""Tests of engine/: the per-meter step, local time, consent, and one engine raising the same alerts everywhere."""
