"""Fill a database directly for benchmarks: users, friendships, threads, deep history.

Going through the protocol would measure registration, not what a benchmark
is about; this writes the same rows the server would, in bulk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from argon2 import PasswordHasher

from tinychat.server.store.dialect import MYSQL, SQLITE
from tinychat.server.store.migrations import connect_sync, migrate
from tinychat.server.store.url import parse_database_url

PASSWORD = "benchmark password"  # noqa: S105 - the seeded benchmark accounts


@dataclass
class Pair:
    sender: str
    sender_uid: int
    receiver: str
    receiver_uid: int
    thread_id: int


class _Rows:
    """An open database and the rows the server would write for users and friendships."""

    def __init__(self, db: str) -> None:
        url = parse_database_url(db)
        migrate(url)
        self.sql = (SQLITE if url.kind == "sqlite" else MYSQL).sql
        self.conn = connect_sync(url)
        self.cursor = self.conn.cursor()
        self.now = int(time.time() * 1000)

    def add_users(self, count: int, prefix: str) -> list[tuple[int, str]]:
        """`count` users named prefix+uid, all with PASSWORD: [(uid, name)]."""
        # A cheap hash: benchmarks of messaging should not pay for argon2 at login.
        password_hash = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
        self.cursor.execute("SELECT COALESCE(MAX(uid), 9999) FROM users")
        first = self.cursor.fetchone()[0] + 1
        rows = [(uid, f"{prefix}{uid}", f"{prefix}{uid}", f"{prefix}{uid}@bench.invalid", password_hash, self.now)
                for uid in range(first, first + count)]
        for start in range(0, len(rows), 1000):
            self.cursor.executemany(self.sql("INSERT INTO users (uid, username, username_key, email, password_hash, "
                                             "totp_enabled, created_at_ms) VALUES (?, ?, ?, ?, ?, 0, ?)"),
                                    rows[start:start + 1000])
        return [(row[0], row[1]) for row in rows]

    def befriend(self, a: int, b: int) -> int:
        """The rows the server writes when b accepts a's request; returns their direct thread."""
        cursor, sql, now = self.cursor, self.sql, self.now
        cursor.execute(sql("INSERT INTO threads (kind, last_seq, user_lo, user_hi, title, created_at_ms) "
                           "VALUES (1, 0, ?, ?, '', ?)"), (min(a, b), max(a, b), now))
        thread_id = cursor.lastrowid
        cursor.executemany(sql("INSERT INTO thread_members (thread_id, uid, role, read_seq, joined_at_ms) "
                               "VALUES (?, ?, 0, 0, ?)"), [(thread_id, a, now), (thread_id, b, now)])
        cursor.executemany(sql("INSERT INTO friendships (uid, friend_uid, remark, created_at_ms) "
                               "VALUES (?, ?, '', ?)"), [(a, b, now), (b, a, now)])
        return thread_id

    def close(self) -> None:
        self.conn.commit()
        self.conn.close()


def seed_pairs(db: str, pairs: int, extra_users: int = 0, prefix: str = "bench", friends: int = 0) -> list[Pair]:
    """Create `pairs` befriended user pairs and `extra_users` more users; returns the pairs.

    With `friends`, every pair member is also befriended (with a direct thread)
    with that many of the extra users, to show that a big friend list does not
    make messages dearer.
    """
    if friends > extra_users:
        raise ValueError("friends are taken from the extra users: need extra_users >= friends")
    rows = _Rows(db)
    users = rows.add_users(pairs * 2 + extra_users, prefix)
    extras = users[pairs * 2:]
    result = []
    for index in range(pairs):
        (a, a_name), (b, b_name) = users[2 * index], users[2 * index + 1]
        result.append(Pair(a_name, a, b_name, b, rows.befriend(a, b)))
        for offset, member in enumerate((a, b)):
            start = (2 * index + offset) * friends
            for j in range(friends):
                rows.befriend(member, extras[(start + j) % len(extras)][0])
    rows.close()
    return result


def seed_history(db: str, pair: Pair, count: int) -> None:
    """Append `count` messages to the pair's thread (alternating authors)."""
    url = parse_database_url(db)
    dialect = SQLITE if url.kind == "sqlite" else MYSQL
    conn = connect_sync(url)
    cursor = conn.cursor()
    sql = dialect.sql
    cursor.execute(sql("SELECT last_seq FROM threads WHERE thread_id = ?"), (pair.thread_id,))
    first = cursor.fetchone()[0] + 1
    now = int(time.time() * 1000)
    text = "a benchmark message of a typical length, neither short nor long"
    chunk = 5000
    for start in range(first, first + count, chunk):
        stop = min(start + chunk, first + count)
        rows = [(pair.thread_id, seq, pair.sender_uid if seq % 2 else pair.receiver_uid,
                 seq * 7919 + pair.thread_id, text, now) for seq in range(start, stop)]
        cursor.executemany(sql("INSERT INTO messages (thread_id, seq, sender_uid, client_msg_id, kind, body, "
                               "sent_at_ms) VALUES (?, ?, ?, ?, 1, ?, ?)"), rows)
        conn.commit()
    cursor.execute(sql("UPDATE threads SET last_seq = ? WHERE thread_id = ?"), (first + count - 1, pair.thread_id))
    conn.commit()
    conn.close()


def seed_star(db: str, members: int, prefix: str = "fan") -> tuple[str, list[str]]:
    """An owner befriended with `members` users (for group benchmarks and tests): (owner, member names)."""
    rows = _Rows(db)
    (owner, owner_name), *others = rows.add_users(members + 1, prefix)
    for uid, _ in others:
        rows.befriend(owner, uid)
    rows.close()
    return owner_name, [name for _, name in others]
