"""File storage: blob metadata in SQL, content behind a BlobStore.

A blob is content-addressed by its SHA-256, so the same file uploaded twice is
stored once.  `FileBlobStore` keeps content in a directory (the embedded
node); `SqlBlobStore` keeps it as chunks in the shared database, which every
node of a cluster can read, so an upload started on one node can be resumed
on another.  Content I/O runs off the reactor thread.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Protocol

from twisted.internet import defer, threads

from tinychat.server.store.records import BlobRow


def get_blob(tx: Any, blob_id: str) -> BlobRow | None:
    row = tx.one("SELECT blob_id, size, media_type, complete, width, height FROM blobs WHERE blob_id = ?",
                 (blob_id,))
    return BlobRow(row[0], row[1], row[2], bool(row[3]), row[4], row[5]) if row else None


def begin_blob(tx: Any, blob_id: str, size: int, media_type: str, uid: int, name: str, now_ms: int) -> BlobRow:
    row = get_blob(tx, blob_id)
    if row is None:
        try:
            tx.execute("INSERT INTO blobs (blob_id, size, media_type, complete, width, height, created_at_ms) "
                       "VALUES (?, ?, ?, 0, 0, 0, ?)", (blob_id, size, media_type, now_ms))
        except Exception as e:
            if type(e).__name__ != "IntegrityError":
                raise
        row = get_blob(tx, blob_id)
    if tx.one("SELECT 1 FROM blob_uploaders WHERE blob_id = ? AND uid = ?", (blob_id, uid)) is None:
        tx.execute("INSERT INTO blob_uploaders (blob_id, uid, name) VALUES (?, ?, ?)", (blob_id, uid, name))
    else:
        tx.execute("UPDATE blob_uploaders SET name = ? WHERE blob_id = ? AND uid = ?", (name, blob_id, uid))
    return row


def name_of(tx: Any, blob_id: str, uid: int) -> str:
    """The name this user gave the file, or the first uploader's."""
    row = tx.one("SELECT name FROM blob_uploaders WHERE blob_id = ? AND uid = ?", (blob_id, uid)) or \
        tx.one("SELECT name FROM blob_uploaders WHERE blob_id = ? LIMIT 1", (blob_id,))
    return row[0] if row else ""


def may_read(tx: Any, blob_id: str, uid: int) -> bool:
    if tx.one("SELECT 1 FROM blob_uploaders WHERE blob_id = ? AND uid = ?", (blob_id, uid)):
        return True
    return tx.one("SELECT 1 FROM messages m JOIN thread_members t ON t.thread_id = m.thread_id "
                  "WHERE m.blob_id = ? AND t.uid = ? LIMIT 1", (blob_id, uid)) is not None


class BlobStore(Protocol):
    """Where file content lives; every method returns a Deferred."""

    def stored(self, blob_id: str) -> defer.Deferred:
        """Bytes held so far (of a partial or a complete blob)."""

    def append(self, blob_id: str, offset: int, data: bytes) -> defer.Deferred:
        """Add bytes at `offset`, which must be the stored size."""

    def digest(self, blob_id: str) -> defer.Deferred:
        """SHA-256 hex of the stored bytes (when all have arrived)."""

    def head(self, blob_id: str, length: int) -> defer.Deferred:
        """The first `length` bytes (to read image dimensions)."""

    def seal(self, blob_id: str) -> defer.Deferred:
        """The stored bytes are verified: make them the blob's content."""

    def discard(self, blob_id: str) -> defer.Deferred:
        """Drop a partial upload (a hash mismatch)."""

    def read(self, blob_id: str, offset: int, length: int) -> defer.Deferred:
        """Up to `length` bytes from `offset` of a complete blob."""


class FileBlobStore:
    """Blobs as files: ROOT/partial/ID while uploading, ROOT/ID[:2]/ID once verified."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "partial").mkdir(parents=True, exist_ok=True)

    def _partial(self, blob_id: str) -> Path:
        return self.root / "partial" / blob_id

    def _final(self, blob_id: str) -> Path:
        return self.root / blob_id[:2] / blob_id

    def _path(self, blob_id: str) -> Path:
        final = self._final(blob_id)
        return final if final.exists() else self._partial(blob_id)

    def stored(self, blob_id: str) -> defer.Deferred:
        def size() -> int:
            path = self._path(blob_id)
            return path.stat().st_size if path.exists() else 0

        return threads.deferToThread(size)

    def append(self, blob_id: str, offset: int, data: bytes) -> defer.Deferred:
        def write() -> int:
            path = self._partial(blob_id)
            with open(path, "ab") as f:
                if f.tell() != offset:
                    raise ValueError(f"stored size is {f.tell()}, not {offset}")
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
                return f.tell()

        return threads.deferToThread(write)

    def digest(self, blob_id: str) -> defer.Deferred:
        def sha() -> str:
            h = hashlib.sha256()
            with open(self._path(blob_id), "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            return h.hexdigest()

        return threads.deferToThread(sha)

    def head(self, blob_id: str, length: int) -> defer.Deferred:
        def read() -> bytes:
            with open(self._path(blob_id), "rb") as f:
                return f.read(length)

        return threads.deferToThread(read)

    def seal(self, blob_id: str) -> defer.Deferred:
        def move() -> None:
            final = self._final(blob_id)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._partial(blob_id), final)

        return threads.deferToThread(move)

    def discard(self, blob_id: str) -> defer.Deferred:
        return threads.deferToThread(lambda: self._partial(blob_id).unlink(missing_ok=True))

    def read(self, blob_id: str, offset: int, length: int) -> defer.Deferred:
        def read() -> bytes:
            with open(self._final(blob_id), "rb") as f:
                f.seek(offset)
                return f.read(length)

        return threads.deferToThread(read)


class SqlBlobStore:
    """Blobs as chunk rows in the shared database: any node can resume or serve them."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def stored(self, blob_id: str) -> defer.Deferred:
        return self.store.run(_stored, blob_id)

    def append(self, blob_id: str, offset: int, data: bytes) -> defer.Deferred:
        return self.store.run(_append, blob_id, offset, data)

    def digest(self, blob_id: str) -> defer.Deferred:
        return self.store.run(_digest, blob_id)

    def head(self, blob_id: str, length: int) -> defer.Deferred:
        return self.store.run(_read, blob_id, 0, length)

    def seal(self, blob_id: str) -> defer.Deferred:
        return defer.succeed(None)  # the complete flag in `blobs` is what makes it readable

    def discard(self, blob_id: str) -> defer.Deferred:
        return self.store.run(lambda tx: tx.execute("DELETE FROM blob_chunks WHERE blob_id = ?", (blob_id,)))

    def read(self, blob_id: str, offset: int, length: int) -> defer.Deferred:
        return self.store.run(_read, blob_id, offset, length)


def _stored(tx: Any, blob_id: str) -> int:
    row = tx.one("SELECT start_offset, LENGTH(data) FROM blob_chunks WHERE blob_id = ? "
                 "ORDER BY start_offset DESC LIMIT 1", (blob_id,))
    return row[0] + row[1] if row else 0


def _append(tx: Any, blob_id: str, offset: int, data: bytes) -> int:
    stored = _stored(tx, blob_id)
    if stored != offset:
        raise ValueError(f"stored size is {stored}, not {offset}")
    tx.execute("INSERT INTO blob_chunks (blob_id, start_offset, data) VALUES (?, ?, ?)", (blob_id, offset, data))
    return offset + len(data)


def _digest(tx: Any, blob_id: str) -> str:
    h = hashlib.sha256()
    cursor = tx.execute("SELECT data FROM blob_chunks WHERE blob_id = ? ORDER BY start_offset", (blob_id,))
    while rows := cursor.fetchmany(16):
        for (data,) in rows:
            h.update(data)
    return h.hexdigest()


def _read(tx: Any, blob_id: str, offset: int, length: int) -> bytes:
    end = offset + length
    rows = tx.all("SELECT start_offset, data FROM blob_chunks WHERE blob_id = ? AND start_offset < ? "
                  "AND start_offset + LENGTH(data) > ? ORDER BY start_offset", (blob_id, end, offset))
    out = b"".join(bytes(data) for _, data in rows)
    if not rows:
        return b""
    first = rows[0][0]
    return out[offset - first:end - first]
