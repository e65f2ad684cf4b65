"""The one pattern for names that come from outside, and what label values may carry.

    >>> is_identifier("pm-site-1"), is_identifier("10.0.0.7:9100"), is_identifier("[::1]:9100")
    (True, True, True)
    >>> is_identifier("{{ lookup('pipe','id') }}"), is_identifier("a\\nb"), is_identifier("-x")
    (False, False, False)
    >>> label_problem({"target": "web-0.shop_eu"}) is None
    True

A target (and any label used as a name, and every label name) is a hostname, an IPv4 or
bracketed IPv6 address with or without a port, a Kubernetes pod name, or a plain word:
ASCII letters, digits, ``.``, ``-``, ``_``, ``:``, ``[``, ``]``, 1-200 characters, starting
with a letter, a digit, ``_`` or ``[`` (never ``-`` or ``.``: no option flags, no relative
paths). Everything a template, a shell or a log could read as syntax is outside it:
braces, ``%``, quotes, whitespace, control characters, ``$``, backticks, ``|``, ``;``, ``/``,
``\\``, ``=``, non-ASCII. Other label values (never used as names) may be any text up to
``MAX_LABEL_VALUE_LEN`` without control characters, so no newline reaches a log raw.

Refusals are booked under ``bad_target`` (the target is missing or not an identifier) or
``bad_labels`` (too many labels, a bad label name, a label value with control characters
or too long); messages quote the offending value through ``loggable``, never raw.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from kernel.logsafe import safe

MAX_ID_LEN = 200
MAX_LABELS = 32
MAX_LABEL_VALUE_LEN = 1024
NAME_LABELS: tuple[str, ...] = ("target",)
"""Labels whose values are used as names (file names, playbook variables, log keys)."""

IDENTIFIER = re.compile(rf"[A-Za-z0-9_\[][A-Za-z0-9_.:\[\]-]{{0,{MAX_ID_LEN - 1}}}", re.ASCII)
# C0, DEL, C1 and the Unicode line/paragraph separators: anything a log would break on
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def is_identifier(value: object) -> bool:
    """True for a string the one pattern takes whole."""
    return isinstance(value, str) and IDENTIFIER.fullmatch(value) is not None


@functools.lru_cache(maxsize=4096)
def _label_name_ok(key: object) -> bool:
    """``is_identifier`` for label names, memoised: a source sends the same few names in
    every sample, and this check runs once per label of every sample."""
    return is_identifier(key)


def loggable(value: object, limit: int = 60) -> str:
    """A value as it may appear in an error message: quoted, and printable as the log's
    ``logsafe.safe`` makes it (control characters escaped, cut to ``limit``)."""
    return f"'{safe(value, limit)}'"


def label_problem(labels: object) -> tuple[str, str] | None:
    """``(reason, message)`` for the first thing wrong with ``labels``, or None when fine."""
    if not isinstance(labels, Mapping):
        return "bad_labels", "labels must be an object of name: value"
    target = labels.get("target")
    if target is None or target == "":
        return "bad_target", "labels.target is required (the machine the sample is about)"
    if not is_identifier(target):
        return "bad_target", (
            f"labels.target {loggable(target)} is not an identifier (1-{MAX_ID_LEN} of "
            "A-Z a-z 0-9 . - _ : [ ], not starting with - or .)"
        )
    if len(labels) > MAX_LABELS:
        return "bad_labels", f"at most {MAX_LABELS} labels, got {len(labels)}"
    for key, value in labels.items():
        if key == "target":  # checked whole above
            continue
        if not _label_name_ok(key):
            return "bad_labels", f"label name {loggable(key)} is not an identifier"
        if not isinstance(value, str):
            return "bad_labels", f"label {key}: the value must be a string"
        if key in NAME_LABELS and not is_identifier(value):
            return "bad_labels", f"label {key} {loggable(value)} is not an identifier"
        if len(value) > MAX_LABEL_VALUE_LEN:
            return "bad_labels", f"label {key}: longer than {MAX_LABEL_VALUE_LEN} characters"
        if CONTROL.search(value):
            return "bad_labels", f"label {key} {loggable(value)} holds control characters"
    return None


__all__ = [
    "IDENTIFIER",
    "MAX_ID_LEN",
    "MAX_LABELS",
    "MAX_LABEL_VALUE_LEN",
    "NAME_LABELS",
    "is_identifier",
    "label_problem",
    "loggable",
]
