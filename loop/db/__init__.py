"""SQL: one schema for every table (``schema``), its engine (``engine``) and its migrations
by Alembic (``migrate``, ``migrations/``), applied at start on SQLite and PostgreSQL."""
