"""Throw-away databases for tests: a SQLite file, or a uniquely named MariaDB database.

MariaDB is at 127.0.0.1:3306 (root, no password) unless TINYCHAT_TEST_MYSQL
says otherwise.  When it is missing the MySQL half of the suite is skipped on
a developer's machine and fails under CI=true.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

MYSQL = os.environ.get("TINYCHAT_TEST_MYSQL", "mysql://root@127.0.0.1:3306")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _mysql_admin():
    import pymysql

    from tinychat.server.store.url import parse_database_url

    url = parse_database_url(MYSQL + "/mysql")
    return pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password,
                           connect_timeout=5, autocommit=True)


def require_mysql() -> None:
    """Skip (or, in CI, fail) when MariaDB cannot be reached."""
    try:
        _mysql_admin().close()
    except Exception as e:
        if IN_CI:
            pytest.fail(f"MariaDB is required in CI and is not reachable at {MYSQL}: {e}")
        pytest.skip(f"MariaDB not reachable at {MYSQL}: {e}")


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A database URL that no one else uses, removed afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'tinychat.sqlite3'}"
        return
    require_mysql()
    name = f"tinychat_test_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    admin = _mysql_admin()
    try:
        admin.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        yield f"{MYSQL}/{name}"
    finally:
        # A connection left open in the database would make the DROP wait for ever: fail instead.
        admin.cursor().execute("SET SESSION lock_wait_timeout = 60")
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()
