"""Breaking a real database under a running server, as a bad migration or an operator would."""

from __future__ import annotations

from sqlalchemy import create_engine, text


def drop_tables(url: str, *tables: str) -> None:
    """Break the database under the running server, as a bad migration would."""
    engine = create_engine(url)
    with engine.begin() as connection:
        if engine.dialect.name == "mysql":
            connection.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
        else:
            connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
        for table in tables:
            connection.execute(
                text(f"DROP TABLE {connection.dialect.identifier_preparer.quote(table)}")
            )
    engine.dispose()
