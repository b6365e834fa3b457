"""Alembic environment: runs migrations on the engine OPUS hands over (no alembic.ini needed)."""

from alembic import context

from opus.storage.tables import metadata
config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
