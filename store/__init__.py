"""The farm's store: SQLAlchemy 2 models, Alembic-managed schema, and the reads and writes that
api/ and workers/ share. PostgreSQL (psycopg 3) in the farm, SQLite in embedded mode."""
