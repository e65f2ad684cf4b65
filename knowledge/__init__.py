"""The knowledge graph: past cases and the solutions that fixed them, in Neo4j.

``graph`` holds every Cypher statement; ``embedding`` turns text into vectors;
``similarity`` scores a report against a case; ``seed`` loads the built-in cases. (The
domain vocabulary is the kernel's, ``kernel.domain``; the local Neo4j launcher is a tool,
``mendloop.local_neo4j``.)
"""
