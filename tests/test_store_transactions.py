"""Store transactions on MariaDB: a deadlock is retried on the spot, in a fresh transaction."""

from __future__ import annotations

from pathlib import Path

import pymysql
import pytest

from tests.databases import _mysql_admin, fresh_database
from tests.reactor_thread import call
from tinychat.server.errors import UnavailableError
from tinychat.server.store.sql import _MAX_RETRIES, SqlStore

pytestmark = pytest.mark.integration
on_mariadb = pytest.mark.parametrize("store", ["mysql"], indirect=True)  # deadlocks are InnoDB's


def _deadlocking(times: int, attempts: list[int]):
    """A transaction that writes a row, then deadlocks the first `times` times it runs."""

    def transaction(tx):
        attempts.append(len(attempts) + 1)
        tx.execute("INSERT INTO users (username, username_key, email, password_hash, created_at_ms) "
                   "VALUES (?, ?, ?, '', 0)", (f"u{len(attempts)}", f"u{len(attempts)}", f"u{len(attempts)}@x"))
        if len(attempts) <= times:
            raise pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
        return "done"

    return transaction


def _usernames(store: SqlStore) -> list[str]:
    return [row[0] for row in call(store.run, lambda tx: tx.all("SELECT username FROM users ORDER BY uid"))]


@on_mariadb
def test_a_deadlocked_transaction_is_rolled_back_and_run_again(store: SqlStore):
    attempts: list[int] = []
    assert call(store.run, _deadlocking(2, attempts)) == "done"
    assert attempts == [1, 2, 3]
    assert _usernames(store) == ["u3"]  # the deadlocked attempts left nothing behind


@on_mariadb
def test_a_transaction_that_keeps_deadlocking_fails_in_the_end(store: SqlStore):
    attempts: list[int] = []
    with pytest.raises(UnavailableError):  # what a client then hears: try again
        call(store.run, _deadlocking(99, attempts))
    assert len(attempts) == _MAX_RETRIES + 1
    assert _usernames(store) == []


@on_mariadb
def test_other_errors_are_not_retried(store: SqlStore):
    attempts: list[int] = []

    def broken(tx):
        attempts.append(1)
        tx.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(pymysql.err.ProgrammingError):
        call(store.run, broken)
    assert attempts == [1]


def test_a_connection_killed_since_its_last_use_is_replaced_without_an_error(tmp_path: Path):
    """A database restart (here: the server killing the connection) costs the next request nothing."""
    with fresh_database("mysql", tmp_path) as url:
        store = SqlStore(url, pool_size=1)
        try:
            def connection_id(tx):
                return tx.one("SELECT CONNECTION_ID()")[0]

            first = call(store.run, connection_id)
            admin = _mysql_admin()
            admin.cursor().execute(f"KILL {int(first)}")
            admin.close()
            second = call(store.run, connection_id)
            assert second != first
        finally:
            store.close()
