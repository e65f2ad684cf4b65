"""Digital twin of the power-marketing service platform (see ``twin.model``).

The HTTP control surface lives in ``twin.server`` and is imported on demand, so the
pure simulation stays usable without FastAPI/uvicorn.
"""

from twin.model import (
    ACTIONS,
    FAULTS,
    METRICS,
    ActionSpec,
    Effect,
    FaultSpec,
    MetricSpec,
    Twin,
    TwinError,
    UnknownAction,
    UnknownFault,
    UnknownTarget,
)

__all__ = [
    "ACTIONS",
    "FAULTS",
    "METRICS",
    "ActionSpec",
    "Effect",
    "FaultSpec",
    "MetricSpec",
    "Twin",
    "TwinError",
    "UnknownAction",
    "UnknownFault",
    "UnknownTarget",
]
