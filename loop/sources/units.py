"""Does the unit a source declares agree with the catalog's? (OTLP metrics carry UCUM units.)

    units_agree("ms", "ms")          True
    units_agree("s", "ms")           False   a thousand-fold error, refused
    units_agree("{points}/s", "pts/s")  True  both are counts per second

The dangerous mistakes are scale and kind (s vs ms, ratio vs %, Cel vs Fahrenheit); a
count annotation (``{points}``, ``1``) is not, so counts per the same time unit agree.
An empty unit says nothing and is accepted.
"""

from __future__ import annotations

import re

_ALIASES = {
    "milliseconds": "ms",
    "millisecond": "ms",
    "seconds": "s",
    "second": "s",
    "sec": "s",
    "percent": "%",
    "1": "ratio",
    "cel": "c",
    "celsius": "c",
    "hertz": "hz",
    "volt": "v",
    "ampere": "a",
    "hours": "h",
    "hour": "h",
    "minutes": "min",
    "minute": "min",
    "d": "day",
    "days": "day",
}
_PER = re.compile(r"^(?P<num>[^/]*)/(?P<den>[a-z]+)$")


def normalise_unit(unit: str) -> str:
    text = re.sub(r"\{([^}]*)\}", r"\1", unit.strip().lower())  # UCUM annotation -> word
    if "/" in text:
        num, _, den = text.partition("/")
        return f"{_ALIASES.get(num, num) or 'ratio'}/{_ALIASES.get(den, den)}"
    return _ALIASES.get(text, text)


def units_agree(sent: str, expected: str) -> bool:
    if not sent.strip():
        return True
    a, b = normalise_unit(sent), normalise_unit(expected)
    if a == b:
        return True
    rate_a, rate_b = _PER.match(a), _PER.match(b)
    if rate_a and rate_b and rate_a["den"] == rate_b["den"]:
        # counts of things per the same time unit: "1/s", "pts/s", "{points}/s"
        return all(m["num"].isalpha() or m["num"] == "ratio" for m in (rate_a, rate_b))
    return False
