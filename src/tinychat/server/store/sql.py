"""The SQL store: every durable read and write, on adbapi's thread pool.

One implementation serves SQLite (the embedded default) and MySQL/MariaDB (a
cluster); `Dialect` covers the differences.  Each public method runs one
transaction off the reactor thread and returns a Deferred.  Connection-level
database failures become `UnavailableError`, so clients get UNAVAILABLE and
nothing half-done is acknowledged; MySQL deadlocks are retried.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.python.failure import Failure

from tinychat.protocol import Attachment, ChatMessage, Direction, ErrorCode, MessageKind, Role, ThreadKind
from tinychat.server.errors import UnavailableError, refuse
from tinychat.server.store.dialect import MYSQL, SQLITE, Dialect
from tinychat.server.store.migrations import migrate
from tinychat.server.store.records import (
    CodeRow,
    FriendRequestRow,
    FriendRequestStatus,
    FriendRow,
    NewMessage,
    StoredMessage,
    ThreadRow,
    UserRow,
)
from tinychat.server.store.url import DatabaseUrl, parse_database_url

T = TypeVar("T")
Cursor = Any
_U64 = 1 << 64
_I64 = 1 << 63
_RETRYABLE_MYSQL = {1205, 1213}  # lock wait timeout, deadlock
_LOST_MYSQL = {2006, 2013, 2055}  # server gone away, connection lost during a query
_MAX_RETRIES = 3


class _RunAgainError(Exception):
    """Raised in a transaction that has changed course: roll it back and run it again."""


class DuplicateError(Exception):
    """A unique key refused a row; `field` names which."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} already exists")
        self.field = field


class NotFoundError(Exception):
    """The row the operation needs does not exist (or is not the caller's)."""


def to_i64(value: int) -> int:
    """Store a u64 in a signed BIGINT column."""
    return value - _U64 if value >= _I64 else value


def from_i64(value: int) -> int:
    return value + _U64 if value < 0 else value


def _user(row: tuple) -> UserRow:
    return UserRow(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6])


_USER_COLUMNS = "uid, username, email, password_hash, totp_secret, totp_enabled, created_at_ms"
_REQUEST_SELECT = (
    "SELECT r.id, r.from_uid, fu.username, r.to_uid, tu.username, r.greeting, r.status, r.created_at_ms "
    "FROM friend_requests r JOIN users fu ON fu.uid = r.from_uid JOIN users tu ON tu.uid = r.to_uid "
)


# Reads (history pages, lists) being run or waiting for the reactor to take their results.
READS_IN_FLIGHT = 4


class SqlStore:
    """Durable state of TinyChat in one SQL database."""

    def __init__(self, url: DatabaseUrl | str, pool_size: int = 4) -> None:
        if isinstance(url, str):
            url = parse_database_url(url)
        self._read_slots = defer.DeferredSemaphore(READS_IN_FLIGHT)
        self.url = url
        self.dialect: Dialect = SQLITE if url.kind == "sqlite" else MYSQL
        if url.kind == "sqlite":
            # One connection for everything that writes: SQLite has one writer.  The big reads
            # (history pages, lists) go to their own connections: in WAL mode readers never wait
            # for the writer nor it for them, and sqlite3 releases the GIL while it works, so a
            # burst of history pages neither delays the next message commit nor stalls the reactor.
            self.pool = adbapi.ConnectionPool(
                "sqlite3", url.path, check_same_thread=False, timeout=30,
                cp_min=1, cp_max=1, cp_openfun=_setup_sqlite, cp_noisy=False,
            )
            self.read_pool = adbapi.ConnectionPool(
                "sqlite3", url.path, check_same_thread=False, timeout=30,
                cp_min=1, cp_max=2, cp_openfun=_setup_sqlite_reader, cp_noisy=False,
            )
            self.message_pool = self.pool
            self._transient: tuple[type[BaseException], ...] = (sqlite3.OperationalError,)
        else:
            import pymysql

            def mysql_pool(size: int) -> adbapi.ConnectionPool:
                return adbapi.ConnectionPool(
                    "pymysql", host=url.host, port=url.port, user=url.user, password=url.password,
                    database=url.database, charset="utf8mb4", autocommit=False, connect_timeout=5,
                    read_timeout=30, write_timeout=30,
                    # JSON_ARRAYAGG (a session's friends at login) is cut at this length; 1 MiB by default
                    init_command="SET SESSION group_concat_max_len = @@max_allowed_packet",
                    cp_min=1, cp_max=size, cp_reconnect=True, cp_noisy=False,
                )

            self.pool = mysql_pool(pool_size)
            self.read_pool = self.pool
            # Message batches (one at a time, see writer.py) have a connection of their own:
            # a commit never waits for a free connection behind a burst of reads.
            self.message_pool = mysql_pool(1)
            self._transient = (pymysql.err.OperationalError, pymysql.err.InterfaceError,
                               adbapi.ConnectionLost)

    def migrate(self) -> int:
        """Apply schema migrations synchronously (call before the reactor runs)."""
        return migrate(self.url)

    def close(self) -> None:
        for pool in {self.pool, self.read_pool, self.message_pool}:
            pool.close()

    # ------------------------------------------------------------ plumbing

    def _read(self, fn: Callable[..., T], *args: Any) -> defer.Deferred:
        """`_run` for a function that only reads, on the read connections.

        At most `READS_IN_FLIGHT` at a time, counting results not yet taken by
        the reactor: database threads answer history pages faster than a busy
        reactor can send them, and without the bound a thousand clients asking
        for pages of long messages piled up gigabytes of rows.
        """
        return self._read_slots.run(self._run, fn, *args, pool=self.read_pool)

    def _run(self, fn: Callable[..., T], *args: Any, pool: adbapi.ConnectionPool | None = None) -> defer.Deferred:
        """Run `fn(cursor, *args)` in a transaction; retry deadlocks; map outages.

        A deadlocked transaction is rolled back and run again at once, on its own
        database thread; one whose connection died before its commit (a database
        restart since the connection was last used) is run again on a new one.
        """
        dialect = self.dialect
        pool = pool or self.pool
        kind = self.url.kind
        retryable = _RETRYABLE_MYSQL if kind == "mysql" else frozenset()

        def in_thread(connection: Any) -> T:  # runWithConnection commits after it, or rolls back and fails
            for attempt in range(_MAX_RETRIES + 1):
                transaction = adbapi.Transaction(pool, connection)
                try:
                    result = fn(_Tx(transaction, dialect), *args)
                except Exception as error:
                    code = error.args[0] if error.args and type(error.args[0]) is int else None
                    lost = kind == "mysql" and (code in _LOST_MYSQL or type(error).__name__ == "InterfaceError")
                    if attempt == _MAX_RETRIES or not (lost or code in retryable or type(error) is _RunAgainError):
                        raise
                    if lost:  # the connection died before the commit, so nothing of this was kept:
                        connection.reconnect()  # run it again on a new one (fails if the database is still away)
                    else:
                        connection.rollback()
                else:
                    transaction.close()
                    return result
            raise AssertionError("unreachable")

        def failed(failure: Failure) -> Any:
            if failure.check(*self._transient):
                raise UnavailableError(f"database: {failure.value}")
            return failure

        return pool.runWithConnection(in_thread).addErrback(failed)

    # ------------------------------------------------------------ users

    def create_user(self, username: str, email: str, password_hash: str, now_ms: int) -> defer.Deferred:
        """Insert an account; fails with DuplicateError('username'|'email')."""
        return self._run(_create_user, username, email, password_hash, now_ms)

    def find_user(self, identifier: str) -> defer.Deferred:
        """The user named by uid (decimal), e-mail address or username, or None."""
        return self._run(_find_user, identifier)

    def get_user(self, uid: int) -> defer.Deferred:
        return self._run(_find_user_by, "uid", uid)

    def get_user_by_email(self, email: str) -> defer.Deferred:
        return self._run(_find_user_by, "email", email.lower())

    def taken(self, username: str, email: str) -> defer.Deferred:
        """(username taken, email taken)."""
        return self._run(_taken, username.lower(), email.lower())

    def reset_password(self, uid: int, password_hash: str) -> defer.Deferred:
        """Set a new password hash and revoke every resume token of the user."""
        return self._run(_reset_password, uid, password_hash)

    def set_totp(self, uid: int, secret: str | None, enabled: bool) -> defer.Deferred:
        return self._run(_set_totp, uid, secret, enabled)

    # ------------------------------------------------------------ tokens

    def add_token(self, token_hash: str, uid: int, now_ms: int, expires_at_ms: int) -> defer.Deferred:
        return self._run(_add_token, token_hash, uid, now_ms, expires_at_ms)

    def token_user(self, token_hash: str, now_ms: int) -> defer.Deferred:
        """(uid, expires_at_ms) of a live token, or None."""
        return self._run(_token_user, token_hash, now_ms)

    def token_login(self, token_hash: str, now_ms: int) -> defer.Deferred:
        """(UserRow, expires_at_ms, friends, threads) of a live token's user, or None.

        Everything a token login reads, in one transaction: each round trip to the
        database thread costs the reactor more than the queries cost SQLite.
        `friends` and `threads` are as in `session_state`.
        """
        return self._run(_token_login, token_hash, now_ms)

    def token_logins(self, lookups: list[tuple[str, int]]) -> defer.Deferred:
        """`token_login` of each (token_hash, now_ms), in one transaction: [result or None], in order.

        Token logins arriving together share one round trip (see handlers.accounts.TokenLookups).
        """
        return self._run(_token_logins, lookups)

    def add_token_and_state(self, token_hash: str, uid: int, now_ms: int, expires_at_ms: int) -> defer.Deferred:
        """`add_token`, then `session_state` of the user, in one transaction (a password login's last step)."""
        return self._run(_add_token_and_state, token_hash, uid, now_ms, expires_at_ms)

    def revoke_token(self, token_hash: str) -> defer.Deferred:
        return self._run(_exec, "DELETE FROM tokens WHERE token_hash = ?", (token_hash,))

    # ------------------------------------------------------------ verification codes

    def get_code(self, email: str, purpose: int) -> defer.Deferred:
        return self._run(_get_code, email, purpose)

    def put_code(self, code: CodeRow) -> defer.Deferred:
        return self._run(_put_code, code)

    def count_code_attempt(self, email: str, purpose: int) -> defer.Deferred:
        return self._run(_exec, "UPDATE verification_codes SET attempts = attempts + 1 "
                                "WHERE email = ? AND purpose = ?", (email, purpose))

    def delete_code(self, email: str, purpose: int) -> defer.Deferred:
        return self._run(_exec, "DELETE FROM verification_codes WHERE email = ? AND purpose = ?",
                         (email, purpose))

    # ------------------------------------------------------------ friends

    def search_users(self, prefix: str | None, uid: int | None, limit: int) -> defer.Deferred:
        """[(uid, username)]: the exact uid first, then usernames starting with `prefix`."""
        return self._read(_search_users, prefix, uid, limit)

    def create_friend_request(self, from_uid: int, to_uid: int, greeting: str, now_ms: int) -> defer.Deferred:
        """(FriendRequestRow, created): a pending request, new or the one already pending."""
        return self._run(_create_friend_request, from_uid, to_uid, greeting, now_ms)

    def resolve_friend_request(self, request_id: int, to_uid: int, accept: bool, remark: str,
                               now_ms: int) -> defer.Deferred:
        """(FriendRequestRow, thread_id or 0); NotFoundError unless pending and addressed to to_uid."""
        return self._run(_resolve_friend_request, request_id, to_uid, accept, remark, now_ms)

    def pending_friend_requests(self, uid: int) -> defer.Deferred:
        """(incoming, outgoing) pending requests."""
        return self._read(_pending_friend_requests, uid)

    def friends(self, uid: int) -> defer.Deferred:
        """[FriendRow] ordered by username."""
        return self._read(_friends, uid)

    def remove_friend(self, uid: int, friend_uid: int) -> defer.Deferred:
        """True if they were friends."""
        return self._run(_remove_friend, uid, friend_uid)

    def session_state(self, uid: int) -> defer.Deferred:
        """({friend uid: direct thread id}, {thread id: peer uid or 0}) for a new session."""
        return self._run(_session_state, uid)

    # ------------------------------------------------------------ threads and messages

    def threads(self, uid: int) -> defer.Deferred:
        """[ThreadRow] of every thread the user is a member of."""
        return self._read(_threads, uid)

    def thread_members(self, thread_id: int) -> defer.Deferred:
        return self._run(_thread_members, thread_id)

    def history(self, thread_id: int, cursor_seq: int, direction: Direction, limit: int) -> defer.Deferred:
        """([ChatMessage] ascending, has_more): a range scan on (thread_id, seq)."""
        return self._read(_history, thread_id, cursor_seq, direction, limit)

    def mark_read(self, uid: int, thread_id: int, seq: int) -> defer.Deferred:
        """Raise the read mark (clamped to the thread's last seq); returns (read_seq, last_seq)."""
        return self._run(_mark_read, uid, thread_id, seq, self.dialect)

    def append_messages(self, batch: list[NewMessage], now_ms: int) -> defer.Deferred:
        """Store a batch in one transaction; [StoredMessage] in the batch's order.

        Batches are written one after another, in the order they were given.
        """
        return self._run(_append_messages, batch, now_ms, self.dialect, _Resends(), pool=self.message_pool)

    def is_member(self, thread_id: int, uid: int) -> defer.Deferred:
        return self._run(_is_member, thread_id, uid)

    # ------------------------------------------------------------ groups (store/groups.py)

    def create_group(self, owner_uid: int, name: str, members: list[int], now_ms: int) -> defer.Deferred:
        """The new group's thread id; the owner is OWNER, the others MEMBER."""
        from tinychat.server.store import groups

        return self._run(groups.create_group, owner_uid, name, members, now_ms)

    def group(self, thread_id: int) -> defer.Deferred:
        """(name, owner_uid, {uid: role}) of a group, or None."""
        from tinychat.server.store import groups

        return self._run(groups.group, thread_id)

    def add_group_members(self, thread_id: int, uids: list[int], cap: int, now_ms: int) -> defer.Deferred:
        """The uids actually added (others were members already); GroupFullError past `cap`."""
        from tinychat.server.store import groups

        return self._run(groups.add_members, thread_id, uids, cap, now_ms)

    def remove_group_member(self, thread_id: int, uid: int) -> defer.Deferred:
        from tinychat.server.store import groups

        return self._run(groups.remove_member, thread_id, uid)

    def set_group_role(self, thread_id: int, uid: int, role: Role, previous_owner: int) -> defer.Deferred:
        from tinychat.server.store import groups

        return self._run(groups.set_role, thread_id, uid, role, previous_owner)

    def rename_group(self, thread_id: int, name: str) -> defer.Deferred:
        return self._run(_exec, "UPDATE threads SET title = ? WHERE thread_id = ?", (name, thread_id))

    def dissolve_group(self, thread_id: int) -> defer.Deferred:
        from tinychat.server.store import groups

        return self._run(groups.dissolve, thread_id)

    def groups_of(self, uid: int) -> defer.Deferred:
        """[GroupRow] of the user's groups."""
        from tinychat.server.store import groups

        return self._read(groups.groups_of, uid)

    def group_members(self, thread_id: int) -> defer.Deferred:
        """[MemberRow], owner first, then admins, then by name."""
        from tinychat.server.store import groups

        return self._read(groups.members, thread_id)

    # ------------------------------------------------------------ files (store/blobs.py)

    def blob(self, blob_id: str) -> defer.Deferred:
        from tinychat.server.store import blobs

        return self._run(blobs.get_blob, blob_id)

    def begin_blob(self, blob_id: str, size: int, media_type: str, uid: int, name: str,
                   now_ms: int) -> defer.Deferred:
        """`blobs.UploadStart`: the caller's upload started or resumed (see `blobs.begin_blob`)."""
        from tinychat.server.store import blobs

        return self._run(blobs.begin_blob, blob_id, size, media_type, uid, name, now_ms)

    def blob_name(self, blob_id: str, uid: int) -> defer.Deferred:
        from tinychat.server.store import blobs

        return self._run(blobs.name_of, blob_id, uid)

    def may_read_blob(self, blob_id: str, uid: int) -> defer.Deferred:
        """True for an uploader of the blob and for members of a thread that carries it."""
        from tinychat.server.store import blobs

        return self._run(blobs.may_read, blob_id, uid)

    def run(self, fn: Callable[..., T], *args: Any) -> defer.Deferred:
        """Run `fn(tx, *args)` in a transaction (for stores built on this one, e.g. blob chunks)."""
        return self._run(fn, *args)


def _mysql_renderer(connection: Any) -> Callable[[str, tuple], str]:
    """What pymysql does to a query's parameters (`query % escaped values`), with the usual types inline.

    pymysql escapes each value through several Python calls; a batch of 500
    messages has about 8,000 values, and escaping them took a quarter of the
    batch's transaction.  Ints, strings and None are rendered here exactly as
    pymysql renders them; anything else goes to the connection's own `escape`.
    """
    from pymysql.constants.SERVER_STATUS import SERVER_STATUS_NO_BACKSLASH_ESCAPES
    from pymysql.converters import escape_string

    escape = connection.escape

    def render(query: str, params: tuple) -> str:
        if connection.server_status & SERVER_STATUS_NO_BACKSLASH_ESCAPES:  # the server's sql_mode says so
            return query % tuple(map(escape, params))
        return query % tuple([
            str(value) if type(value) is int
            else "'" + escape_string(value) + "'" if type(value) is str
            else "NULL" if value is None
            else escape(value)
            for value in params])

    return render


class _Tx:
    """A cursor wrapper that rewrites placeholders for the driver (and renders MySQL's parameters)."""

    __slots__ = ("_cursor", "_render", "_sql", "for_update", "json_agg")

    def __init__(self, cursor: Cursor, dialect: Dialect) -> None:
        self._cursor = cursor
        self._sql = dialect.sql
        self._render = _mysql_renderer(cursor.connection) if dialect is MYSQL else None
        self.for_update = dialect.for_update
        self.json_agg = dialect.json_agg

    def execute(self, query: str, params: Iterable[Any] = ()) -> Cursor:
        params = tuple(params)
        for value in params:  # a u64 from a request past BIGINT: no row can match, say so instead of crashing
            if type(value) is int and not -_I64 <= value < _I64:
                raise refuse(ErrorCode.INVALID_ARGUMENT, f"number out of range: {value}")
        if self._render is None:
            self._cursor.execute(self._sql(query), params)
        else:
            self._cursor.execute(self._render(self._sql(query), params))
        return self._cursor

    def one(self, query: str, params: Iterable[Any] = ()) -> tuple | None:
        return self.execute(query, params).fetchone()

    def all(self, query: str, params: Iterable[Any] = ()) -> list[tuple]:
        return list(self.execute(query, params).fetchall())

    @property
    def lastrowid(self) -> int:
        return self._cursor.lastrowid

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount


def _setup_sqlite_reader(conn: sqlite3.Connection) -> None:
    _setup_sqlite(conn)
    conn.execute("PRAGMA query_only=1")


def _setup_sqlite(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=OFF")


def _is_integrity_error(error: BaseException) -> bool:
    return type(error).__name__ == "IntegrityError"


def _exec(tx: _Tx, query: str, params: tuple) -> int:
    return tx.execute(query, params).rowcount


# ---------------------------------------------------------------- users


def _create_user(tx: _Tx, username: str, email: str, password_hash: str, now_ms: int) -> int:
    taken_name, taken_email = _taken(tx, username.lower(), email.lower())
    if taken_name:
        raise DuplicateError("username")
    if taken_email:
        raise DuplicateError("email")
    try:
        tx.execute("INSERT INTO users (username, username_key, email, password_hash, totp_enabled, "
                   "created_at_ms) VALUES (?, ?, ?, ?, 0, ?)",
                   (username, username.lower(), email.lower(), password_hash, now_ms))
    except Exception as e:
        if _is_integrity_error(e):  # a concurrent registration won the race
            raise DuplicateError("username") from None
        raise
    return tx.lastrowid


def _taken(tx: _Tx, username_key: str, email: str) -> tuple[bool, bool]:
    name = tx.one("SELECT 1 FROM users WHERE username_key = ?", (username_key,))
    mail = tx.one("SELECT 1 FROM users WHERE email = ?", (email,))
    return name is not None, mail is not None


def _find_user_by(tx: _Tx, column: str, value: Any) -> UserRow | None:
    row = tx.one(f"SELECT {_USER_COLUMNS} FROM users WHERE {column} = ?", (value,))
    return _user(row) if row else None


def _find_user(tx: _Tx, identifier: str) -> UserRow | None:
    identifier = identifier.strip()
    if identifier.isascii() and identifier.isdigit():  # not '²', which int() refuses
        return _find_user_by(tx, "uid", int(identifier)) if len(identifier) < 19 else None
    if "@" in identifier:
        return _find_user_by(tx, "email", identifier.lower())
    return _find_user_by(tx, "username_key", identifier.lower())


def _reset_password(tx: _Tx, uid: int, password_hash: str) -> None:
    tx.execute("UPDATE users SET password_hash = ? WHERE uid = ?", (password_hash, uid))
    tx.execute("DELETE FROM tokens WHERE uid = ?", (uid,))


def _set_totp(tx: _Tx, uid: int, secret: str | None, enabled: bool) -> None:
    tx.execute("UPDATE users SET totp_secret = ?, totp_enabled = ? WHERE uid = ?", (secret, int(enabled), uid))


# ---------------------------------------------------------------- tokens


def _add_token(tx: _Tx, token_hash: str, uid: int, now_ms: int, expires_at_ms: int) -> None:
    tx.execute("DELETE FROM tokens WHERE uid = ? AND expires_at_ms <= ?", (uid, now_ms))
    tx.execute("INSERT INTO tokens (token_hash, uid, created_at_ms, expires_at_ms) VALUES (?, ?, ?, ?)",
               (token_hash, uid, now_ms, expires_at_ms))


def _token_user(tx: _Tx, token_hash: str, now_ms: int) -> tuple[int, int] | None:
    row = tx.one("SELECT uid, expires_at_ms FROM tokens WHERE token_hash = ?", (token_hash,))
    if row is None or row[1] <= now_ms:
        return None
    return row[0], row[1]


def _token_login(tx: _Tx, token_hash: str, now_ms: int
                 ) -> tuple[UserRow, int, dict[int, int], dict[int, int]] | None:
    row = tx.one(_TOKEN_LOGIN[tx.json_agg], (token_hash,))
    if row is None or row[7] <= now_ms:
        return None
    return _user(row), row[7], *_state_from_json(row[0], row[8], row[9])


def _token_logins(tx: _Tx, lookups: list[tuple[str, int]]
                  ) -> list[tuple[UserRow, int, dict[int, int], dict[int, int]] | None]:
    return [_token_login(tx, token_hash, now_ms) for token_hash, now_ms in lookups]


def _add_token_and_state(tx: _Tx, token_hash: str, uid: int, now_ms: int, expires_at_ms: int
                         ) -> tuple[dict[int, int], dict[int, int]]:
    _add_token(tx, token_hash, uid, now_ms, expires_at_ms)
    return _session_state(tx, uid)


# ---------------------------------------------------------------- codes


def _get_code(tx: _Tx, email: str, purpose: int) -> CodeRow | None:
    row = tx.one("SELECT email, purpose, code_hash, attempts, sent_at_ms, expires_at_ms "
                 "FROM verification_codes WHERE email = ? AND purpose = ?", (email, purpose))
    return CodeRow(*row) if row else None


def _put_code(tx: _Tx, code: CodeRow) -> None:
    tx.execute("DELETE FROM verification_codes WHERE email = ? AND purpose = ?", (code.email, code.purpose))
    tx.execute("INSERT INTO verification_codes (email, purpose, code_hash, attempts, sent_at_ms, "
               "expires_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
               (code.email, code.purpose, code.code_hash, code.attempts, code.sent_at_ms, code.expires_at_ms))


# ---------------------------------------------------------------- friends


def _search_users(tx: _Tx, prefix: str | None, uid: int | None, limit: int) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    if uid is not None and uid < _I64:
        row = tx.one("SELECT uid, username FROM users WHERE uid = ?", (uid,))
        if row:
            found.append((row[0], row[1]))
    if prefix:
        # Usernames are [a-z0-9_] once lowered, all below "{": a plain index range scan.
        rows = tx.all("SELECT uid, username FROM users WHERE username_key >= ? AND username_key < ? "
                      "ORDER BY username_key LIMIT ?", (prefix, prefix + "{", limit))
        found.extend((r[0], r[1]) for r in rows if all(r[0] != f[0] for f in found))
    return found[:limit]


def _request(tx: _Tx, request_id: int) -> FriendRequestRow | None:
    row = tx.one(_REQUEST_SELECT + "WHERE r.id = ?", (request_id,))
    return FriendRequestRow(*row) if row else None


def _create_friend_request(tx: _Tx, from_uid: int, to_uid: int, greeting: str,
                           now_ms: int) -> tuple[FriendRequestRow, bool] | None:
    if tx.one("SELECT 1 FROM users WHERE uid = ?", (to_uid,)) is None:
        return None
    key = f"{from_uid}:{to_uid}"
    existing = tx.one("SELECT id FROM friend_requests WHERE pending_key = ?", (key,))
    if existing:
        return _request(tx, existing[0]), False
    tx.execute("INSERT INTO friend_requests (from_uid, to_uid, greeting, status, pending_key, created_at_ms) "
               "VALUES (?, ?, ?, ?, ?, ?)", (from_uid, to_uid, greeting, FriendRequestStatus.PENDING, key, now_ms))
    return _request(tx, tx.lastrowid), True


def _direct_thread(tx: _Tx, a: int, b: int, now_ms: int) -> int:
    """The direct thread of two users, created (with both members) when missing."""
    lo, hi = min(a, b), max(a, b)
    row = tx.one("SELECT thread_id FROM threads WHERE user_lo = ? AND user_hi = ?", (lo, hi))
    if row:
        thread_id = row[0]
    else:
        tx.execute("INSERT INTO threads (kind, last_seq, user_lo, user_hi, title, created_at_ms) "
                   "VALUES (?, 0, ?, ?, '', ?)", (int(ThreadKind.DIRECT), lo, hi, now_ms))
        thread_id = tx.lastrowid
    for uid in (lo, hi):
        if tx.one("SELECT 1 FROM thread_members WHERE thread_id = ? AND uid = ?", (thread_id, uid)) is None:
            tx.execute("INSERT INTO thread_members (thread_id, uid, role, read_seq, joined_at_ms) "
                       "VALUES (?, ?, 0, 0, ?)", (thread_id, uid, now_ms))
    return thread_id


def _resolve_friend_request(tx: _Tx, request_id: int, to_uid: int, accept: bool, remark: str,
                            now_ms: int) -> tuple[FriendRequestRow, int]:
    row = tx.one("SELECT from_uid FROM friend_requests WHERE id = ? AND to_uid = ? AND status = ?",
                 (request_id, to_uid, FriendRequestStatus.PENDING))
    if row is None:
        raise NotFoundError(f"friend request {request_id}")
    from_uid = row[0]
    status = FriendRequestStatus.ACCEPTED if accept else FriendRequestStatus.REJECTED
    tx.execute("UPDATE friend_requests SET status = ?, pending_key = NULL, resolved_at_ms = ? WHERE id = ?",
               (status, now_ms, request_id))
    thread_id = 0
    if accept:
        for uid, friend, note in ((to_uid, from_uid, remark), (from_uid, to_uid, "")):
            if tx.one("SELECT 1 FROM friendships WHERE uid = ? AND friend_uid = ?", (uid, friend)) is None:
                tx.execute("INSERT INTO friendships (uid, friend_uid, remark, created_at_ms) VALUES (?, ?, ?, ?)",
                           (uid, friend, note, now_ms))
        # A crossing request the other way is settled by this answer too.
        tx.execute("UPDATE friend_requests SET status = ?, pending_key = NULL, resolved_at_ms = ? "
                   "WHERE pending_key = ?", (FriendRequestStatus.ACCEPTED, now_ms, f"{to_uid}:{from_uid}"))
        thread_id = _direct_thread(tx, from_uid, to_uid, now_ms)
    return _request(tx, request_id), thread_id


def _pending_friend_requests(tx: _Tx, uid: int) -> tuple[list[FriendRequestRow], list[FriendRequestRow]]:
    pending = FriendRequestStatus.PENDING
    incoming = tx.all(_REQUEST_SELECT + "WHERE r.to_uid = ? AND r.status = ? ORDER BY r.id", (uid, pending))
    outgoing = tx.all(_REQUEST_SELECT + "WHERE r.from_uid = ? AND r.status = ? ORDER BY r.id", (uid, pending))
    return [FriendRequestRow(*r) for r in incoming], [FriendRequestRow(*r) for r in outgoing]


def _friends(tx: _Tx, uid: int) -> list[FriendRow]:
    rows = tx.all(
        "SELECT f.friend_uid, u.username, f.remark, COALESCE(t.thread_id, 0) FROM friendships f "
        "JOIN users u ON u.uid = f.friend_uid "
        "LEFT JOIN threads t ON t.user_lo = CASE WHEN f.uid < f.friend_uid THEN f.uid ELSE f.friend_uid END "
        "AND t.user_hi = CASE WHEN f.uid < f.friend_uid THEN f.friend_uid ELSE f.uid END "
        "WHERE f.uid = ? ORDER BY u.username_key", (uid,))
    return [FriendRow(*r) for r in rows]


def _remove_friend(tx: _Tx, uid: int, friend_uid: int) -> bool:
    removed = tx.execute("DELETE FROM friendships WHERE uid = ? AND friend_uid = ?", (uid, friend_uid)).rowcount
    tx.execute("DELETE FROM friendships WHERE uid = ? AND friend_uid = ?", (friend_uid, uid))
    return removed > 0


def _state_columns(json_agg: str, uid: str) -> str:
    """Two columns: the user's friends as a JSON array of [friend_uid, thread_id] and their
    threads as one of [thread_id, user_lo, user_hi], for the user whose uid is the SQL `uid`.

    One row for the whole state, where two queries gave one row per friend and per
    thread: sqlite3 hands the GIL over at every row it steps to, and at a login
    burst each hand-over is a wait for the reactor thread.
    """
    lo_hi = ("t.user_lo = CASE WHEN f.uid < f.friend_uid THEN f.uid ELSE f.friend_uid END "
             "AND t.user_hi = CASE WHEN f.uid < f.friend_uid THEN f.friend_uid ELSE f.uid END")
    return (f"(SELECT {json_agg}(JSON_ARRAY(f.friend_uid, COALESCE(t.thread_id, 0))) FROM friendships f "
            f"LEFT JOIN threads t ON {lo_hi} WHERE f.uid = {uid}), "
            f"(SELECT {json_agg}(JSON_ARRAY(t.thread_id, t.user_lo, t.user_hi)) FROM thread_members m "
            f"JOIN threads t ON t.thread_id = m.thread_id WHERE m.uid = {uid})")


def _state_from_json(uid: int, friends_json: str | None, threads_json: str | None
                     ) -> tuple[dict[int, int], dict[int, int]]:
    """(friend uid -> 1:1 thread id or 0, thread id -> peer uid or 0 for a group) from `_state_columns`."""
    friends = {friend_uid: thread_id for friend_uid, thread_id in json.loads(friends_json or "[]")}
    threads: dict[int, int] = {}
    for thread_id, user_lo, user_hi in json.loads(threads_json or "[]"):  # MySQL's aggregate of no rows is NULL
        threads[thread_id] = 0 if user_lo is None else (user_hi if user_lo == uid else user_lo)
    return friends, threads


_SESSION_STATE = {agg: f"SELECT {_state_columns(agg, '?')}" for agg in (SQLITE.json_agg, MYSQL.json_agg)}
_TOKEN_LOGIN = {agg: f"SELECT {', '.join('u.' + c for c in _USER_COLUMNS.split(', '))}, t.expires_at_ms, "
                     f"{_state_columns(agg, 'u.uid')} FROM tokens t JOIN users u ON u.uid = t.uid "
                     "WHERE t.token_hash = ?"
                for agg in (SQLITE.json_agg, MYSQL.json_agg)}


def _session_state(tx: _Tx, uid: int) -> tuple[dict[int, int], dict[int, int]]:
    friends_json, threads_json = tx.one(_SESSION_STATE[tx.json_agg], (uid, uid))
    return _state_from_json(uid, friends_json, threads_json)


# ---------------------------------------------------------------- threads


def _threads(tx: _Tx, uid: int) -> list[ThreadRow]:
    rows = tx.all(
        "SELECT t.thread_id, t.kind, t.user_lo, t.user_hi, t.title, t.last_seq, m.read_seq "
        "FROM thread_members m JOIN threads t ON t.thread_id = m.thread_id WHERE m.uid = ? "
        "ORDER BY t.thread_id", (uid,))
    peers = {}
    result = []
    for thread_id, kind, lo, hi, title, last_seq, read_seq in rows:
        peer = 0 if lo is None else (hi if lo == uid else lo)
        peers[thread_id] = peer
        result.append(ThreadRow(thread_id, kind, peer, title, last_seq, read_seq))
    names = _usernames(tx, {p for p in peers.values() if p})
    for row in result:
        if row.peer_uid:
            row.title = names.get(row.peer_uid, "")
    return result


def _usernames(tx: _Tx, uids: set[int]) -> dict[int, str]:
    if not uids:
        return {}
    ids = sorted(uids)
    marks = ", ".join("?" * len(ids))
    return dict(tx.all(f"SELECT uid, username FROM users WHERE uid IN ({marks})", ids))


def _is_member(tx: _Tx, thread_id: int, uid: int) -> bool:
    return tx.one("SELECT 1 FROM thread_members WHERE thread_id = ? AND uid = ?", (thread_id, uid)) is not None


def _thread_members(tx: _Tx, thread_id: int) -> list[int]:
    return [r[0] for r in tx.all("SELECT uid FROM thread_members WHERE thread_id = ?", (thread_id,))]


def _history(tx: _Tx, thread_id: int, cursor_seq: int, direction: Direction,
             limit: int) -> tuple[list[ChatMessage], bool]:
    columns = ("seq, sender_uid, client_msg_id, sent_at_ms, body, kind, blob_id, att_name, att_size, att_type, "
               "att_width, att_height")
    if direction is Direction.BEFORE:
        bound = cursor_seq if cursor_seq else _I64 - 1
        rows = tx.all(f"SELECT {columns} FROM messages WHERE thread_id = ? AND seq < ? "
                      "ORDER BY seq DESC LIMIT ?", (thread_id, bound, limit + 1))
        has_more = len(rows) > limit
        rows = rows[:limit]
        rows.reverse()
    else:
        rows = tx.all(f"SELECT {columns} FROM messages WHERE thread_id = ? AND seq > ? "
                      "ORDER BY seq LIMIT ?", (thread_id, cursor_seq, limit + 1))
        has_more = len(rows) > limit
        rows = rows[:limit]
    return [_chat_message(thread_id, row) for row in rows], has_more


def _chat_message(thread_id: int, row: tuple) -> ChatMessage:
    seq, sender, cmid, sent, body, kind, blob_id, name, size, media_type, width, height = row
    if blob_id is None:
        return ChatMessage(thread_id, seq, sender, from_i64(cmid), sent, body)
    return ChatMessage(thread_id, seq, sender, from_i64(cmid), sent, body, MessageKind(kind),
                       Attachment(blob_id, name, size, media_type, width, height))


def _mark_read(tx: _Tx, uid: int, thread_id: int, seq: int, dialect: Dialect) -> tuple[int, int]:
    row = tx.one("SELECT last_seq FROM threads WHERE thread_id = ?", (thread_id,))
    if row is None:
        raise NotFoundError(f"thread {thread_id}")
    last_seq = row[0]
    target = min(seq, last_seq)
    tx.execute(f"UPDATE thread_members SET read_seq = {dialect.greatest}(read_seq, ?) "
               "WHERE thread_id = ? AND uid = ?", (target, thread_id, uid))
    read = tx.one("SELECT read_seq FROM thread_members WHERE thread_id = ? AND uid = ?", (thread_id, uid))
    if read is None:
        raise NotFoundError(f"thread {thread_id}")
    return read[0], last_seq


# ---------------------------------------------------------------- messages


@dataclass(slots=True)
class _Resends:
    """Whether a batch looks for resends before it inserts.

    Resends are rare (a client that lost its connection before the ack), so a
    batch first inserts without looking: the unique key on (client_msg_id,
    sender_uid) refuses a message stored before, and only then is the batch
    run again, looking first.  Looking costs an indexed read per message.
    """

    look_first: bool = False


def _append_messages(tx: _Tx, batch: list[NewMessage], now_ms: int, dialect: Dialect,
                     resends: _Resends | None = None) -> list[StoredMessage]:
    """Group commit: dedupe by (client_msg_id, sender), allocate seqs per thread, insert all rows.

    Seqs come from `threads.last_seq`, read under a row lock (MySQL) or the
    single SQLite writer, and raised in the same transaction as the inserts:
    dense, increasing, never shared, whatever other nodes do at the same time.
    """
    resends = resends or _Resends(look_first=True)
    results: list[StoredMessage | None] = [None] * len(batch)
    # 1. Resends: a (client_msg_id, sender) already stored returns its first outcome.
    keys = sorted({(to_i64(m.client_msg_id), m.sender_uid) for m in batch}) if resends.look_first else []
    known: dict[tuple[int, int], StoredMessage] = {}
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        marks = ", ".join("?" * len(chunk))
        for cmid, sender, thread_id, seq, sent, body in tx.all(
                f"SELECT client_msg_id, sender_uid, thread_id, seq, sent_at_ms, body FROM messages"
                f"{dialect.use_index('client_msg_id')} WHERE client_msg_id IN ({marks})", [c for c, _ in chunk]):
            known[(cmid, sender)] = StoredMessage(thread_id, seq, sent, True, body)
    fresh: list[int] = []
    first_index: dict[tuple[int, int], int] = {}
    for index, message in enumerate(batch):
        key = (to_i64(message.client_msg_id), message.sender_uid)
        if key in known:
            results[index] = known[key]
        elif key in first_index:  # the same resend twice in one batch
            continue
        else:
            first_index[key] = index
            fresh.append(index)
    # 2. Seqs: lock the threads' rows, raise last_seq by each thread's count.
    per_thread: dict[int, list[int]] = defaultdict(list)
    for index in fresh:
        per_thread[batch[index].thread_id].append(index)
    if per_thread:
        thread_ids = sorted(per_thread)
        placeholders = ", ".join("?" * len(thread_ids))
        last = dict(tx.all(f"SELECT thread_id, last_seq FROM threads{dialect.use_index('PRIMARY')} "
                           f"WHERE thread_id IN ({placeholders})"
                           f"{dialect.for_update}", thread_ids))
        rows = []
        updates = []
        for thread_id in thread_ids:
            seq = last[thread_id]
            for index in per_thread[thread_id]:
                seq += 1
                m = batch[index]
                a = m.attachment
                rows.append((thread_id, seq, m.sender_uid, to_i64(m.client_msg_id), m.kind, m.text, now_ms,
                             a.blob_id if a else None, a.name if a else "", a.size if a else 0,
                             a.media_type if a else "", a.width if a else 0, a.height if a else 0))
                results[index] = StoredMessage(thread_id, seq, now_ms, False, m.text)
            updates.append((seq, thread_id))
        for start in range(0, len(rows), 200):
            chunk = rows[start:start + 200]
            values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk))
            try:
                tx.execute("INSERT INTO messages (thread_id, seq, sender_uid, client_msg_id, kind, body, "
                           "sent_at_ms, blob_id, att_name, att_size, att_type, att_width, att_height) "
                           f"VALUES {values}", [v for row in chunk for v in row])
            except Exception as error:
                if resends.look_first or not _is_integrity_error(error):
                    raise
                resends.look_first = True  # a resend (or another node stored it just now): look, then insert
                raise _RunAgainError from error
        # Raise each thread's last_seq (rows locked above) and each sender's read mark (the sender is a
        # member, so the row exists): UPDATEs by whole primary keys, which lock only those rows.  An
        # upsert, or a range of a key's prefix, would also lock gaps and neighbouring rows, and the
        # nodes of a cluster would wait for each other on threads they do not share.
        cases = " ".join(["WHEN ? THEN ?"] * len(updates))
        tx.execute(f"UPDATE threads{dialect.use_index('PRIMARY')} SET last_seq = CASE thread_id {cases} "
                   f"ELSE last_seq END WHERE thread_id IN ({placeholders})",
                   [v for seq, thread_id in updates for v in (thread_id, seq)] + thread_ids)
        read_marks: dict[tuple[int, int], int] = {}
        for index in fresh:
            stored = results[index]
            key = (stored.thread_id, batch[index].sender_uid)
            read_marks[key] = max(read_marks.get(key, 0), stored.seq)
        for start in range(0, len(read_marks), 200):
            marks = sorted(read_marks.items())[start:start + 200]
            tx.execute(f"UPDATE thread_members{dialect.use_index('PRIMARY')} "
                       f"SET read_seq = {dialect.greatest}(read_seq, CASE "
                       f"{' '.join(['WHEN thread_id = ? AND uid = ? THEN ?'] * len(marks))} ELSE 0 END) "
                       f"WHERE {' OR '.join(['(thread_id = ? AND uid = ?)'] * len(marks))}",
                       [v for (thread_id, uid), seq in marks for v in (thread_id, uid, seq)]
                       + [v for key, _ in marks for v in key])
    # Duplicates inside the batch share the outcome of their first copy.
    for index, message in enumerate(batch):
        if results[index] is None:
            first = results[first_index[(to_i64(message.client_msg_id), message.sender_uid)]]
            results[index] = StoredMessage(first.thread_id, first.seq, first.sent_at_ms, True, first.text)
    return results  # type: ignore[return-value]
