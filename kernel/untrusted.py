"""Reading JSON that comes from outside (request bodies, uploaded rows, cursors, chat forms).

    payload = untrusted.loads(body)      # ValueError for anything that is not plain JSON

``json.loads`` raises ``RecursionError`` on absurdly nested input (``[[[[...`` a few
thousand deep fits in one request line or URL), which is not a ``ValueError`` and would
escape the callers' error handling as a 500. Every parser of hostile JSON goes through
here, so one ``except ValueError`` at each edge is enough.
"""

from __future__ import annotations

import json
from typing import Any


def loads(data: str | bytes | bytearray) -> Any:
    """``json.loads``, with every failure (bad syntax, bad encoding, absurd nesting) a
    ``ValueError`` saying which."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
