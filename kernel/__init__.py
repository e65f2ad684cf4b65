"""The kernel: what every part of mendloop shares, and nothing else of mendloop.

Typed models that cross step boundaries (``models``, ``approval``), the exception tree
(``errors``), the incident state machine (``state``), Settings (``config``, with the
shadow scope it validates, ``shadow``), the domain vocabulary and topology (``domain``,
``domain.yaml``) and the helpers every edge uses on outside values (``ids``,
``untrusted``, ``logsafe``). A leaf: it imports no other mendloop package (the import
contracts in pyproject.toml check it).
"""

__version__ = "0.1.0"
