"""Tests of the application (tapwatch/): CLI, demo, eval, replay, README, service runs, workers, crashes, faults."""
