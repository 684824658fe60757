"""The data layer: SQLAlchemy tables, sessions, migrations, the catalogue and use-case queries.

Imports nothing from `server/` or `model/`.
"""
