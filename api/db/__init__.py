"""Business data (tenants, badges, API keys, bookings, tariffs, cost pools, invoices) in SQLAlchemy 2.

SQLite by default (a file in the data dir), PostgreSQL supported. The schema is migrated by Alembic
(`shopfloor db upgrade`); the API refuses to start on a database that is not at the newest revision.
"""
