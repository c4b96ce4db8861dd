"""How a tag is written in the InfluxDB line protocol that ``influx_spool`` holds.

:mod:`timeseries.lines` writes the spool's lines with it, and :mod:`store.retention` finds a purged
elder's rows by it: one escaping for both, below the time-series layer that sends the lines.
"""

from __future__ import annotations


def tag_value(value: object) -> str:
    """``value`` as a tag value in line protocol.

    InfluxDB unescapes only backslash-comma, -equals and -space in tag values: a backslash cannot be
    carried, and becomes a slash; a line break becomes a space.

    >>> print(tag_value("E 1,2=x"))
    E\\ 1\\,2\\=x
    """
    text = str(value).replace("\n", " ").replace("\r", " ").replace("\\", "/")
    return text.replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def tag_pair(key: str, value: object) -> str:
    """``key=value`` as a point's tag set holds it (escaped), to find a tag in stored line protocol.

    >>> print(tag_pair("elder_id", "E 1,2"))
    elder_id=E\\ 1\\,2
    """
    return f"{key}={tag_value(value)}"
