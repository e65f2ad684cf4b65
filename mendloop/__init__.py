"""The composition root: the ``mendloop`` command line, the daemon's wiring, the demo,
doctor, benchmarks, the local Neo4j launcher and the tools (rule tester, case generator,
replay). It imports the domain packages; none of them imports it.
"""
