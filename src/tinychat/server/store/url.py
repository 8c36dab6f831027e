"""Database URLs: `sqlite:///relative/path`, `sqlite:////absolute/path`, `mysql://u:p@h:port/db`."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed --db value."""

    kind: str  # "sqlite" or "mysql"
    path: str = ""
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""
    database: str = ""

    def redacted(self) -> str:
        """The URL with its password hidden, for logs."""
        if self.kind == "sqlite":
            return f"sqlite:///{self.path}"
        secret = ":***" if self.password else ""
        return f"mysql://{self.user}{secret}@{self.host}:{self.port}/{self.database}"


def parse_database_url(url: str) -> DatabaseUrl:
    """Parse and check a database URL; raises ValueError with a readable message."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if not path:
            raise ValueError("sqlite URL needs a path: sqlite:///tinychat.sqlite3")
        return DatabaseUrl("sqlite", path=path)
    parts = urlsplit(url)
    if parts.scheme in ("mysql", "mariadb", "mysql+pymysql"):
        database = parts.path.lstrip("/")
        if not database:
            raise ValueError("mysql URL needs a database: mysql://user:password@host:3306/tinychat")
        return DatabaseUrl(
            "mysql",
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=unquote(database),
        )
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:///path or mysql://user:pass@host:port/db")
