"""Tests of detect/: the per-meter detectors, their shared contract and fast paths, the river HalfSpaceTrees peer."""
