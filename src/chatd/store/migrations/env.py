"""Alembic environment: migrations run on a connection chatd hands over."""

from alembic import context

from chatd.store.tables import metadata_obj

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata_obj)
with context.begin_transaction():
    context.run_migrations()
