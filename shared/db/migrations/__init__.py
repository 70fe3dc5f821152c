"""Alembic environment for the MTA schema; run through ``shared.db.migrate``."""
