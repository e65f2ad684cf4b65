"""mendloop: closed-loop AIOps remediation engine.

monitor -> analyze -> decide -> execute -> verify, one module per stage in this package;
`loop.daemon` wires them together.
"""

__version__ = "0.1.0"
