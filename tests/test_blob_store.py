"""The blob store below the file handlers: per-user staging, sealing, and blobs stored before schema 3."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import fresh_database
from tests.reactor_thread import call
from tinychat.server.store import blobs, migrations
from tinychat.server.store.migrations import connect_sync
from tinychat.server.store.sql import SqlStore
from tinychat.server.store.url import parse_database_url

pytestmark = pytest.mark.integration

ALICE, BOB = 10001, 10002


@pytest.fixture(params=["sqlite", "mysql"])
def database(request, tmp_path: Path) -> Iterator[str]:
    with fresh_database(request.param, tmp_path) as url:
        yield url


def _sql(database: str, statements: list[tuple[str, tuple]]) -> list[tuple]:
    url = parse_database_url(database)
    conn = connect_sync(url)
    try:
        cursor = conn.cursor()
        rows: list[tuple] = []
        for statement, params in statements:
            cursor.execute(statement if url.kind == "sqlite" else statement.replace("?", "%s"), params)
            rows = list(cursor.fetchall())
        conn.commit()
        return rows
    finally:
        conn.close()


def _store(database: str) -> tuple[SqlStore, blobs.SqlBlobStore]:
    store = SqlStore(database, pool_size=2)
    store.migrate()
    return store, blobs.SqlBlobStore(store)


def _stage(store: SqlStore, content: blobs.SqlBlobStore, uid: int, data: bytes) -> blobs.UploadRow:
    """Begin and send a whole staging upload of `data` by `uid`, up to (not including) sealing it."""
    blob_id = hashlib.sha256(data).hexdigest()
    start = call(store.begin_blob, blob_id, len(data), "text/plain", uid, f"from {uid}", 1)
    upload = start.upload
    assert upload is not None and not upload.proving
    for offset in range(0, len(data), 1000):
        call(content.append, upload.key, offset, data[offset:offset + 1000])
    assert call(content.digest, upload.key) == blob_id
    return upload


def _finish(store: SqlStore, content: blobs.SqlBlobStore, upload: blobs.UploadRow) -> bool:
    key = call(content.seal, upload.key, upload.blob_id)
    return call(store.run, blobs.finish_upload, upload, 0, 0, key, 2)


def test_two_users_staging_the_same_file_store_it_once(database: str):
    store, content = _store(database)
    try:
        data = b"the same file " * 300
        first, second = _stage(store, content, ALICE, data), _stage(store, content, BOB, data)
        assert first.key != second.key  # staged apart
        assert _finish(store, content, first) is True
        assert _finish(store, content, second) is False  # verified too, but a copy: dropped
        blob_id = first.blob_id
        assert call(content.read, blob_id, 0, len(data)) == data
        assert call(store.may_read_blob, blob_id, ALICE) and call(store.may_read_blob, blob_id, BOB)
        assert _sql(database, [("SELECT COUNT(DISTINCT blob_id), SUM(LENGTH(data)) FROM blob_chunks", ())]) == \
            [(1, len(data))]
        assert _sql(database, [("SELECT COUNT(*) FROM blob_uploads", ())]) == [(0,)]
    finally:
        store.close()


def test_blobs_stored_before_schema_3_stay_readable_and_old_partials_complete(database: str, monkeypatch):
    monkeypatch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:2])
    migrations.migrate(database)
    monkeypatch.undo()
    old, partial = b"an old file " * 200, b"half done before the upgrade " * 100
    old_id, partial_id = hashlib.sha256(old).hexdigest(), hashlib.sha256(partial).hexdigest()
    _sql(database, [
        ("INSERT INTO blobs (blob_id, size, media_type, complete, width, height, created_at_ms) "
         "VALUES (?, ?, '', 1, 0, 0, 0)", (old_id, len(old))),
        ("INSERT INTO blob_chunks (blob_id, start_offset, data) VALUES (?, 0, ?)", (old_id, old)),
        ("INSERT INTO blob_uploaders (blob_id, uid, name) VALUES (?, ?, 'old.txt')", (old_id, ALICE)),
        ("INSERT INTO blobs (blob_id, size, media_type, complete, width, height, created_at_ms) "
         "VALUES (?, ?, '', 0, 0, 0, 0)", (partial_id, len(partial))),
        ("INSERT INTO blob_chunks (blob_id, start_offset, data) VALUES (?, 0, ?)", (partial_id, partial[:1000])),
        ("INSERT INTO blob_uploaders (blob_id, uid, name) VALUES (?, ?, 'half.txt')", (partial_id, ALICE)),
    ])
    store, content = _store(database)
    try:
        assert call(content.read, old_id, 100, 50) == old[100:150]
        # Bob has the old file: he proves it against the content stored under its blob id.
        start = call(store.begin_blob, old_id, len(old), "", BOB, "mine.txt", 1)
        assert start.upload is not None and start.upload.proving
        assert not call(store.may_read_blob, old_id, BOB)
        # The old partial upload is finished by a new staging upload, and its stray chunk goes.
        upload = _stage(store, content, ALICE, partial)
        assert _finish(store, content, upload) is True
        assert call(store.blob, partial_id).complete
        assert call(content.read, partial_id, 0, len(partial)) == partial
        assert _sql(database, [("SELECT COUNT(*) FROM blob_chunks WHERE blob_id = ?", (partial_id,))]) == [(0,)]
    finally:
        store.close()


def test_file_store_stages_each_upload_apart_and_keeps_the_first_verified_copy(tmp_path: Path):
    content = blobs.FileBlobStore(tmp_path / "blobs")
    data = b"one file, two uploads " * 100
    blob_id = hashlib.sha256(data).hexdigest()
    first, second = "a" * 64, "b" * 64
    call(content.append, first, 0, data[:500])
    call(content.append, second, 0, b"x" * 500)  # another user's wrong bytes: no effect on the first
    assert (call(content.staged, first), call(content.staged, second)) == (500, 500)
    with pytest.raises(ValueError):
        call(content.append, first, 100, data[100:200])  # not where this upload stands
    call(content.append, first, 500, data[500:])
    assert call(content.digest, first) == blob_id and call(content.head, first, 8) == data[:8]
    assert call(content.seal, first, blob_id) is None
    call(content.discard, second)
    call(content.append, second, 0, data)
    call(content.seal, second, blob_id)  # verified too: the stored copy stays, this one goes
    assert call(content.read, blob_id, 0, len(data)) == data
    files = sorted(p.relative_to(tmp_path / "blobs").as_posix() for p in (tmp_path / "blobs").rglob("*")
                   if p.is_file())
    assert files == [f"{blob_id[:2]}/{blob_id}"]
