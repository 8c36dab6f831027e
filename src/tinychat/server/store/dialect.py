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
    json_agg: str  # aggregate that gathers values into one JSON array

    @lru_cache(maxsize=512)  # noqa: B019 - dialects are two module-level singletons
    def sql(self, text: str) -> str:
        """Rewrite `?` placeholders for this driver."""
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def use_index(self, index: str) -> str:
        """An index hint for the hot batch statements (empty for SQLite, whose planner needs none).

        InnoDB's statistics of a young, fast-growing table can be far off, and
        then it answers a long IN list with a full scan: slow, and under a lock
        every row of the table is locked, which serialises the nodes.
        """
        return f" FORCE INDEX ({index})" if self.name == "mysql" else ""

    def placeholders(self, count: int) -> str:
        return ", ".join([self.placeholder] * count)


SQLITE = Dialect("sqlite", "?", "INTEGER PRIMARY KEY AUTOINCREMENT", "", "", "max", "BLOB", "json_group_array")
MYSQL = Dialect("mysql", "%s", "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY",
                " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin", " FOR UPDATE", "GREATEST",
                "MEDIUMBLOB", "JSON_ARRAYAGG")
