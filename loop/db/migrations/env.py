"""Alembic's environment for mendloop's schema (loop/db/schema.py).

mendloop runs it itself at start (loop/db/migrate.py hands over an open connection in
``config.attributes["connection"]``). For writing a revision by hand against a scratch
database: ``alembic -c loop/db/alembic.ini revision --autogenerate -m "..."``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from loop.db.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:  # the alembic command line, on sqlalchemy.url of alembic.ini
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
