"""The ground floor: the vocabulary every other package shares and nothing else.

``domain`` holds the records (a reading's interval, a finding, device kinds),
``thresholds`` the operator's detection thresholds per elder,
``settings`` the one Settings object read from the environment, ``metrics``
the Prometheus counters, ``progress`` the progress line long commands draw,
``argtypes`` the command line's number options.
Nothing here imports another tapwatch package.
"""

__version__ = "0.1.0"  # the project version the CLI and the API report
