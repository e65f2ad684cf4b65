"""The knowledge graph: past cases and the solutions that fixed them, in Neo4j.

``graph`` holds every Cypher statement; ``embedding`` turns text into vectors;
``similarity`` scores a report against a case; ``seed`` loads the built-in cases;
``local_neo4j`` starts the development Neo4j built from Maven Central artifacts.
"""
