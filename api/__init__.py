"""The REST API for engineers (FastAPI): incidents with their timeline, sample intake."""
