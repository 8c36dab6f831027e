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


def seed_pairs(db: str, pairs: int, extra_users: int = 0, prefix: str = "bench", friends: int = 0) -> list[Pair]:
    """Create `pairs` befriended user pairs and `extra_users` more users; returns the pairs.

    With `friends`, every pair member is also befriended (with a direct thread)
    with that many of the extra users, to show that a big friend list does not
    make messages dearer.
    """
    if friends > extra_users:
        raise ValueError("friends are taken from the extra users: need extra_users >= friends")
    url = parse_database_url(db)
    migrate(url)
    dialect = SQLITE if url.kind == "sqlite" else MYSQL
    # A cheap hash: benchmarks of messaging should not pay for argon2 at login.
    password_hash = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    now = int(time.time() * 1000)
    conn = connect_sync(url)
    cursor = conn.cursor()
    sql = dialect.sql
    cursor.execute("SELECT COALESCE(MAX(uid), 9999) FROM users")
    next_uid = cursor.fetchone()[0] + 1
    users = []
    for index in range(pairs * 2 + extra_users):
        name = f"{prefix}{next_uid + index}"
        users.append((next_uid + index, name, name, f"{name}@bench.invalid", password_hash, now))
    for start in range(0, len(users), 1000):
        cursor.executemany(sql("INSERT INTO users (uid, username, username_key, email, password_hash, "
                               "totp_enabled, created_at_ms) VALUES (?, ?, ?, ?, ?, 0, ?)"),
                           users[start:start + 1000])
    def befriend(a: int, b: int) -> int:
        """The rows the server writes when b accepts a's request; returns their direct thread."""
        lo, hi = min(a, b), max(a, b)
        cursor.execute(sql("INSERT INTO threads (kind, last_seq, user_lo, user_hi, title, created_at_ms) "
                           "VALUES (1, 0, ?, ?, '', ?)"), (lo, hi, now))
        thread_id = cursor.lastrowid
        cursor.executemany(sql("INSERT INTO thread_members (thread_id, uid, role, read_seq, joined_at_ms) "
                               "VALUES (?, ?, 0, 0, ?)"), [(thread_id, a, now), (thread_id, b, now)])
        cursor.executemany(sql("INSERT INTO friendships (uid, friend_uid, remark, created_at_ms) "
                               "VALUES (?, ?, '', ?)"), [(a, b, now), (b, a, now)])
        return thread_id

    result = []
    extras = users[pairs * 2:]
    for index in range(pairs):
        a, b = users[2 * index], users[2 * index + 1]
        result.append(Pair(a[1], a[0], b[1], b[0], befriend(a[0], b[0])))
        for offset, member in enumerate((a, b)):
            start = (2 * index + offset) * friends
            for j in range(friends):
                befriend(member[0], extras[(start + j) % len(extras)][0])
    conn.commit()
    conn.close()
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
    url = parse_database_url(db)
    migrate(url)
    dialect = SQLITE if url.kind == "sqlite" else MYSQL
    password_hash = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    now = int(time.time() * 1000)
    conn = connect_sync(url)
    cursor = conn.cursor()
    sql = dialect.sql
    cursor.execute("SELECT COALESCE(MAX(uid), 9999) FROM users")
    first = cursor.fetchone()[0] + 1
    users = [(first + i, f"{prefix}{first + i}", f"{prefix}{first + i}", f"{prefix}{first + i}@bench.invalid",
              password_hash, now) for i in range(members + 1)]
    cursor.executemany(sql("INSERT INTO users (uid, username, username_key, email, password_hash, "
                           "totp_enabled, created_at_ms) VALUES (?, ?, ?, ?, ?, 0, ?)"), users)
    owner = users[0]
    for member in users[1:]:
        cursor.execute(sql("INSERT INTO threads (kind, last_seq, user_lo, user_hi, title, created_at_ms) "
                           "VALUES (1, 0, ?, ?, '', ?)"), (owner[0], member[0], now))
        thread_id = cursor.lastrowid
        cursor.executemany(sql("INSERT INTO thread_members (thread_id, uid, role, read_seq, joined_at_ms) "
                               "VALUES (?, ?, 0, 0, ?)"), [(thread_id, owner[0], now), (thread_id, member[0], now)])
        cursor.executemany(sql("INSERT INTO friendships (uid, friend_uid, remark, created_at_ms) "
                               "VALUES (?, ?, '', ?)"), [(owner[0], member[0], now), (member[0], owner[0], now)])
    conn.commit()
    conn.close()
    return owner[1], [u[1] for u in users[1:]]
