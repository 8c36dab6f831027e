"""The few places where SQLite and MySQL/MariaDB SQL differ.

Queries are written once with `?` placeholders and MySQL-or-SQLite-neutral
syntax; a Dialect rewrites placeholders and supplies the differing clauses.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Dialect:
    name: str
    placeholder: str
    auto_pk: str  # column definition of an auto-increment primary key
    table_options: str
    for_update: str
    greatest: str  # name of the two-argument max function
    blob_type: str  # column type for file chunks

    @lru_cache(maxsize=512)  # noqa: B019 - dialects are two module-level singletons
    def sql(self, text: str) -> str:
        """Rewrite `?` placeholders for this driver."""
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def placeholders(self, count: int) -> str:
        return ", ".join([self.placeholder] * count)

    def upsert_max(self, table: str, key: tuple[str, ...], columns: tuple[str, ...], column: str,
                   rows: int = 1) -> str:
        """INSERT `rows` rows, or on a key clash raise `column` to the larger value."""
        names = ", ".join(columns)
        row = ", ".join(["(" + ", ".join(["?"] * len(columns)) + ")"] * rows)
        if self.name == "sqlite":
            tail = (f" ON CONFLICT({', '.join(key)}) DO UPDATE SET "
                    f"{column} = max({column}, excluded.{column})")
        else:
            tail = f" ON DUPLICATE KEY UPDATE {column} = GREATEST({column}, VALUES({column}))"
        return f"INSERT INTO {table} ({names}) VALUES {row}{tail}"


SQLITE = Dialect("sqlite", "?", "INTEGER PRIMARY KEY AUTOINCREMENT", "", "", "max", "BLOB")
MYSQL = Dialect("mysql", "%s", "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY",
                " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin", " FOR UPDATE", "GREATEST",
                "MEDIUMBLOB")
