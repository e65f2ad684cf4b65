"""The twin's errors: refused before anything changes.

MendloopError
 └── TwinError (also a ValueError)
      ├── UnknownTarget
      ├── UnknownFault
      └── UnknownAction
"""

from __future__ import annotations

from kernel.errors import MendloopError


class TwinError(MendloopError, ValueError):
    """An unknown target, fault or action was named; raised before anything changes."""


class UnknownTarget(TwinError):
    pass


class UnknownFault(TwinError):
    pass


class UnknownAction(TwinError):
    pass
