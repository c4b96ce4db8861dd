"""JSON files people save by hand (elders.json, labels.json), read in whatever encoding JSON allows.

Windows saves text as UTF-16 behind a byte order mark (PowerShell's ``> file``, Notepad's "Unicode") or as
UTF-8 with one; a file read as plain UTF-8 then fails with Python's codec error, which names neither the
cause nor the cure. Read as bytes, ``json`` finds UTF-8 (with or without the mark), UTF-16 and UTF-32 itself;
any other encoding (GBK, "ANSI" on a Chinese Windows) is :class:`NotUtf8Text`, one line saying what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class NotUtf8Text(ValueError):
    """A file in an encoding JSON does not allow (GBK, ANSI): what its first bad byte is, and what to do."""

    def __init__(self, error: UnicodeDecodeError) -> None:
        super().__init__(
            f"not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start}; saved as GBK or "
            "ANSI?): save it as UTF-8 and run again"
        )


def load_json_file(path: str | Path) -> Any:
    """The JSON value in ``path``; OSError if it cannot be read, NotUtf8Text, or ValueError if it is not JSON."""
    try:
        return json.loads(Path(path).read_bytes())
    except UnicodeDecodeError as exc:  # a ValueError too: told apart here, where it is known
        raise NotUtf8Text(exc) from None
