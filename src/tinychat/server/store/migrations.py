"""Numbered schema migrations, applied in order at start-up or from the command line.

    python -m tinychat.server.store.migrations --db mysql://root@127.0.0.1/tinychat

Each migration is a list of statements with `{auto_pk}` and `{options}` filled
in per dialect.  A node runs them synchronously before the reactor starts; in
a cluster a MySQL named lock keeps two starting nodes from racing.
"""

from __future__ import annotations

import argparse
import sqlite3
from typing import Any

from tinychat.server.store.dialect import MYSQL, SQLITE, Dialect
from tinychat.server.store.url import DatabaseUrl, parse_database_url

FIRST_UID = 10000

MIGRATIONS: list[list[str]] = [
    # 1: accounts, friends, threads, messages.
    [
        """CREATE TABLE users (
            uid {auto_pk},
            username VARCHAR(32) NOT NULL,
            username_key VARCHAR(32) NOT NULL UNIQUE,
            email VARCHAR(254) NOT NULL UNIQUE,
            password_hash VARCHAR(255) NOT NULL,
            totp_secret VARCHAR(64) NULL,
            totp_enabled SMALLINT NOT NULL DEFAULT 0,
            created_at_ms BIGINT NOT NULL
        ){options}""",
        """CREATE TABLE tokens (
            token_hash CHAR(64) NOT NULL PRIMARY KEY,
            uid BIGINT NOT NULL,
            created_at_ms BIGINT NOT NULL,
            expires_at_ms BIGINT NOT NULL
        ){options}""",
        "CREATE INDEX tokens_by_uid ON tokens (uid)",
        """CREATE TABLE verification_codes (
            email VARCHAR(254) NOT NULL,
            purpose SMALLINT NOT NULL,
            code_hash CHAR(64) NOT NULL,
            attempts INT NOT NULL DEFAULT 0,
            sent_at_ms BIGINT NOT NULL,
            expires_at_ms BIGINT NOT NULL,
            PRIMARY KEY (email, purpose)
        ){options}""",
        """CREATE TABLE friend_requests (
            id {auto_pk},
            from_uid BIGINT NOT NULL,
            to_uid BIGINT NOT NULL,
            greeting VARCHAR(256) NOT NULL,
            status SMALLINT NOT NULL DEFAULT 0,
            pending_key VARCHAR(48) NULL UNIQUE,
            created_at_ms BIGINT NOT NULL,
            resolved_at_ms BIGINT NULL
        ){options}""",
        "CREATE INDEX friend_requests_to ON friend_requests (to_uid, status)",
        "CREATE INDEX friend_requests_from ON friend_requests (from_uid, status)",
        """CREATE TABLE friendships (
            uid BIGINT NOT NULL,
            friend_uid BIGINT NOT NULL,
            remark VARCHAR(64) NOT NULL DEFAULT '',
            created_at_ms BIGINT NOT NULL,
            PRIMARY KEY (uid, friend_uid)
        ){options}""",
        """CREATE TABLE threads (
            thread_id {auto_pk},
            kind SMALLINT NOT NULL,
            last_seq BIGINT NOT NULL DEFAULT 0,
            user_lo BIGINT NULL,
            user_hi BIGINT NULL,
            title VARCHAR(64) NOT NULL DEFAULT '',
            created_at_ms BIGINT NOT NULL,
            UNIQUE (user_lo, user_hi)
        ){options}""",
        """CREATE TABLE thread_members (
            thread_id BIGINT NOT NULL,
            uid BIGINT NOT NULL,
            role SMALLINT NOT NULL DEFAULT 0,
            read_seq BIGINT NOT NULL DEFAULT 0,
            joined_at_ms BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (thread_id, uid)
        ){options}""",
        "CREATE INDEX thread_members_by_uid ON thread_members (uid)",
        """CREATE TABLE messages (
            thread_id BIGINT NOT NULL,
            seq BIGINT NOT NULL,
            sender_uid BIGINT NOT NULL,
            client_msg_id BIGINT NOT NULL,
            kind SMALLINT NOT NULL DEFAULT 1,
            body TEXT NOT NULL,
            sent_at_ms BIGINT NOT NULL,
            PRIMARY KEY (thread_id, seq),
            UNIQUE (client_msg_id, sender_uid)
        ){options}""",
    ],
    # 2: groups (owner, member roles) and files (blobs, their chunks, attachments on messages).
    [
        "ALTER TABLE threads ADD COLUMN owner_uid BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE messages ADD COLUMN blob_id CHAR(64) NULL",
        "ALTER TABLE messages ADD COLUMN att_name VARCHAR(255) NOT NULL DEFAULT ''",
        "ALTER TABLE messages ADD COLUMN att_size BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE messages ADD COLUMN att_type VARCHAR(127) NOT NULL DEFAULT ''",
        "ALTER TABLE messages ADD COLUMN att_width INT NOT NULL DEFAULT 0",
        "ALTER TABLE messages ADD COLUMN att_height INT NOT NULL DEFAULT 0",
        "CREATE INDEX messages_by_blob ON messages (blob_id)",
        """CREATE TABLE blobs (
            blob_id CHAR(64) NOT NULL PRIMARY KEY,
            size BIGINT NOT NULL,
            media_type VARCHAR(127) NOT NULL DEFAULT '',
            complete SMALLINT NOT NULL DEFAULT 0,
            width INT NOT NULL DEFAULT 0,
            height INT NOT NULL DEFAULT 0,
            created_at_ms BIGINT NOT NULL
        ){options}""",
        """CREATE TABLE blob_uploaders (
            blob_id CHAR(64) NOT NULL,
            uid BIGINT NOT NULL,
            name VARCHAR(255) NOT NULL DEFAULT '',
            PRIMARY KEY (blob_id, uid)
        ){options}""",
        """CREATE TABLE blob_chunks (
            blob_id CHAR(64) NOT NULL,
            start_offset BIGINT NOT NULL,
            data {blob} NOT NULL,
            PRIMARY KEY (blob_id, start_offset)
        ){options}""",
    ],
    # 3: uploads per user. Knowing a file's hash grants nothing: every uploader sends the whole content,
    # stored apart from everyone else's until verified, or compared with the stored file when it is
    # complete already; only then is the uploader recorded in blob_uploaders (who may read).
    [
        """CREATE TABLE blob_uploads (
            blob_id CHAR(64) NOT NULL,
            uid BIGINT NOT NULL,
            name VARCHAR(255) NOT NULL DEFAULT '',
            media_type VARCHAR(127) NOT NULL DEFAULT '',
            size BIGINT NOT NULL,
            upload_key CHAR(64) NOT NULL,
            proving SMALLINT NOT NULL DEFAULT 0,
            proven BIGINT NOT NULL DEFAULT 0,
            mismatch SMALLINT NOT NULL DEFAULT 0,
            started_at_ms BIGINT NOT NULL,
            PRIMARY KEY (blob_id, uid)
        ){options}""",
        # Where a complete blob's chunks are in blob_chunks (NULL: under blob_id itself).
        "ALTER TABLE blobs ADD COLUMN content_key CHAR(64) NULL",
    ],
]


def connect_sync(url: DatabaseUrl) -> Any:
    """A plain DB-API connection, for migrations and admin tasks (not for the reactor)."""
    if url.kind == "sqlite":
        conn = sqlite3.connect(url.path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn
    import pymysql

    return pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password,
                           database=url.database, charset="utf8mb4", autocommit=False,
                           connect_timeout=10)


def _current_version(cursor: Any) -> int:
    cursor.execute("SELECT MAX(version) FROM schema_version")
    row = cursor.fetchone()
    return int(row[0] or 0)


def migrate(url: DatabaseUrl | str) -> int:
    """Apply pending migrations; returns the schema version now in force."""
    if isinstance(url, str):
        url = parse_database_url(url)
    dialect: Dialect = SQLITE if url.kind == "sqlite" else MYSQL
    conn = connect_sync(url)
    try:
        cursor = conn.cursor()
        if url.kind == "mysql":
            cursor.execute("SELECT GET_LOCK('tinychat_migrations', 60)")
        cursor.execute("CREATE TABLE IF NOT EXISTS schema_version (version INT NOT NULL)"
                       + dialect.table_options)
        conn.commit()
        version = _current_version(cursor)
        for number, statements in enumerate(MIGRATIONS, start=1):
            if number <= version:
                continue
            for statement in statements:
                cursor.execute(statement.format(auto_pk=dialect.auto_pk, options=dialect.table_options,
                                                blob=dialect.blob_type))
            if number == 1:
                _start_uids(cursor, dialect)
            cursor.execute(dialect.sql("INSERT INTO schema_version (version) VALUES (?)"), (number,))
            conn.commit()
            version = number
        if url.kind == "mysql":
            cursor.execute("SELECT RELEASE_LOCK('tinychat_migrations')")
        return version
    finally:
        conn.close()


def _start_uids(cursor: Any, dialect: Dialect) -> None:
    """User ids start at 10000, so that they read as ids rather than counts."""
    if dialect.name == "sqlite":
        cursor.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('users', ?)", (FIRST_UID - 1,))
    else:
        cursor.execute(f"ALTER TABLE users AUTO_INCREMENT = {FIRST_UID}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Apply TinyChat's schema migrations.")
    parser.add_argument("--db", default="sqlite:///tinychat.sqlite3", help="database URL")
    args = parser.parse_args(argv)
    version = migrate(args.db)
    print(f"{parse_database_url(args.db).redacted()}: schema version {version}")


if __name__ == "__main__":
    main()
