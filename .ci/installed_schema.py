"""Run by the wheel's own interpreter after `taskapi migrate upgrade`: the new SQLite database
must hold every table of the installed package's models, at its migrations' head."""

from __future__ import annotations

import sqlite3
import sys

from alembic.script import ScriptDirectory

from taskapi.core.migrations import alembic_config
from taskapi.models import Base


def main(database: str) -> None:
    connection = sqlite3.connect(database)
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    missing = set(Base.metadata.tables) - tables
    if missing:
        sys.exit(f"the installed wheel did not create: {sorted(missing)}")
    (version,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    script = ScriptDirectory.from_config(alembic_config(f"sqlite+aiosqlite:///{database}"))
    head = script.get_current_head()
    if version != head:
        sys.exit(f"the database is at {version}, the installed migrations' head is {head}")
    sys.stdout.write(f"installed wheel migrated to {head}: {len(Base.metadata.tables)} tables\n")


if __name__ == "__main__":
    main(sys.argv[1])
