"""File storage: blob metadata in SQL, content behind a BlobStore.

A blob is content-addressed by its SHA-256, so the same file uploaded twice is
stored once.  `FileBlobStore` keeps content in a directory (the embedded
node); `SqlBlobStore` keeps it as chunks in the shared database, which every
node of a cluster can read, so an upload started on one node can be resumed
on another.  Content I/O runs off the reactor thread.

Knowing a file's hash grants nothing.  An upload belongs to one user (a row of
`blob_uploads`, so any node can resume it) and goes one of two ways, chosen at
BEGIN_UPLOAD:

- *staging*: the blob is not complete yet.  The user's bytes are kept apart
  from everyone else's, under the upload's own random `upload_key` (a partial
  upload of the same hash by another user is neither shown nor touched); the
  last chunk has them verified against the hash, and the first verified copy
  becomes the blob (a later one is dropped).
- *proving*: the blob is complete already and the user may not read it.  The
  user sends the file all the same; each chunk is compared with the stored
  bytes at its offset instead of being stored, and the proven offset is kept
  in the row.  Any difference is remembered and refused with HASH_MISMATCH
  after the last chunk, as a staging upload of wrong bytes is.

Either way the user becomes one of the blob's uploaders (`blob_uploaders`:
who may read and send it) only once the whole content has arrived and matched.
A user who may read the complete blob already (an uploader, or a member of a
thread that carries it) completes at once.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from twisted.internet import defer, threads

from tinychat.protocol import ErrorCode
from tinychat.server.errors import refuse
from tinychat.server.store.records import BlobRow


def get_blob(tx: Any, blob_id: str) -> BlobRow | None:
    row = tx.one("SELECT blob_id, size, media_type, complete, width, height FROM blobs WHERE blob_id = ?",
                 (blob_id,))
    return BlobRow(row[0], row[1], row[2], bool(row[3]), row[4], row[5]) if row else None


@dataclass(slots=True)
class UploadRow:
    """One user's upload of one blob (`blob_uploads`)."""

    blob_id: str
    uid: int
    name: str
    media_type: str
    size: int
    key: str  # staging: where the BlobStore keeps the bytes (random, never reused)
    proving: bool  # the blob was complete at BEGIN_UPLOAD: chunks are compared with it, not stored
    proven: int  # proving: the bytes received so far
    mismatch: bool  # proving: some byte received so far differed from the stored content


@dataclass(slots=True)
class UploadStart:
    """What BEGIN_UPLOAD found and did."""

    blob: BlobRow | None  # the blob's row, if any
    upload: UploadRow | None  # None only when the caller may read the complete blob already
    stale_key: str | None = None  # bytes staged by an upload this one ended, to be discarded


_UPLOAD_COLUMNS = "blob_id, uid, name, media_type, size, upload_key, proving, proven, mismatch"


def get_upload(tx: Any, blob_id: str, uid: int, lock: bool = False) -> UploadRow | None:
    row = tx.one(f"SELECT {_UPLOAD_COLUMNS} FROM blob_uploads WHERE blob_id = ? AND uid = ?"
                 + (tx.for_update if lock else ""), (blob_id, uid))
    if row is None:
        return None
    return UploadRow(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), row[7], bool(row[8]))


def _is_integrity_error(error: BaseException) -> bool:
    return type(error).__name__ == "IntegrityError"


def _record_uploader(tx: Any, blob_id: str, uid: int, name: str) -> None:
    if tx.one("SELECT 1 FROM blob_uploaders WHERE blob_id = ? AND uid = ?", (blob_id, uid)) is None:
        tx.execute("INSERT INTO blob_uploaders (blob_id, uid, name) VALUES (?, ?, ?)", (blob_id, uid, name))
    else:
        tx.execute("UPDATE blob_uploaders SET name = ? WHERE blob_id = ? AND uid = ?", (name, blob_id, uid))


def _drop_upload(tx: Any, blob_id: str, uid: int) -> None:
    tx.execute("DELETE FROM blob_uploads WHERE blob_id = ? AND uid = ?", (blob_id, uid))


def begin_blob(tx: Any, blob_id: str, size: int, media_type: str, uid: int, name: str, now_ms: int) -> UploadStart:
    """Start or resume `uid`'s upload; a caller who may read the complete blob is recorded as an uploader.

    Anyone else (or a size that is not the blob's) gets an upload of their own: proving if the blob is
    complete with this size, staging otherwise (bytes of another size cannot have this hash: they fail
    after the last chunk, like any wrong bytes).  An upload in progress with the same size is resumed;
    one with another size is replaced.
    """
    blob = get_blob(tx, blob_id)
    complete = blob is not None and blob.complete
    upload = get_upload(tx, blob_id, uid, lock=True)
    stale = upload.key if upload is not None and not upload.proving else None
    if complete and blob.size == size and may_read(tx, blob_id, uid):
        _record_uploader(tx, blob_id, uid, name)
        if upload is not None:
            _drop_upload(tx, blob_id, uid)
        return UploadStart(blob, None, stale)
    if upload is not None and upload.size == size:
        tx.execute("UPDATE blob_uploads SET name = ?, media_type = ? WHERE blob_id = ? AND uid = ?",
                   (name, media_type, blob_id, uid))
        upload.name, upload.media_type = name, media_type
        return UploadStart(blob, upload)
    if upload is not None:
        _drop_upload(tx, blob_id, uid)
    proving = complete and blob.size == size
    key = secrets.token_hex(32)
    try:
        tx.execute("INSERT INTO blob_uploads (blob_id, uid, name, media_type, size, upload_key, proving, proven, "
                   "mismatch, started_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, ?)",
                   (blob_id, uid, name, media_type, size, key, int(proving), now_ms))
    except Exception as e:
        if not _is_integrity_error(e):
            raise
        # The same user began it at the same moment on another connection: resume that one.
        again = get_upload(tx, blob_id, uid)
        if again is None or again.size != size:
            raise
        return UploadStart(blob, again, stale)
    return UploadStart(blob, UploadRow(blob_id, uid, name, media_type, size, key, proving, 0, False), stale)


PROVING = "proving"
PROVEN = "proven"
DIFFERENT = "different"


def advance_proof(tx: Any, blob_id: str, uid: int, offset: int, length: int, matched: bool) -> tuple[int, str]:
    """Count a compared chunk of a proving upload: (new offset, PROVING | PROVEN | DIFFERENT).

    At the end the upload is over: PROVEN records the caller as an uploader, DIFFERENT (some chunk
    did not match) drops it, so a new BEGIN_UPLOAD starts from zero.
    """
    upload = get_upload(tx, blob_id, uid, lock=True)
    if upload is None or not upload.proving:
        raise refuse(ErrorCode.BLOB_NOT_FOUND, "begin the upload first")
    if upload.proven != offset:
        raise refuse(ErrorCode.OFFSET_MISMATCH,
                     f"the server holds {upload.proven} bytes; resume at offset {upload.proven}")
    end = offset + length
    mismatch = upload.mismatch or not matched
    if end < upload.size:
        tx.execute("UPDATE blob_uploads SET proven = ?, mismatch = ? WHERE blob_id = ? AND uid = ?",
                   (end, int(mismatch), blob_id, uid))
        return end, PROVING
    _drop_upload(tx, blob_id, uid)
    if mismatch:
        return end, DIFFERENT
    _record_uploader(tx, blob_id, uid, upload.name)
    return end, PROVEN


def finish_upload(tx: Any, upload: UploadRow, width: int, height: int, content_key: str | None,
                  now_ms: int) -> bool:
    """A staging upload was verified: make it the blob unless one is complete already; record the uploader.

    `content_key` says where an SqlBlobStore staged the bytes (None for a FileBlobStore, which has
    moved them into place).  True when this copy became the blob's content.
    """
    blob_id = upload.blob_id
    row = tx.one("SELECT complete FROM blobs WHERE blob_id = ?" + tx.for_update, (blob_id,))
    kept = False
    if row is None:
        try:
            tx.execute("INSERT INTO blobs (blob_id, size, media_type, complete, width, height, created_at_ms, "
                       "content_key) VALUES (?, ?, ?, 1, ?, ?, ?, ?)",
                       (blob_id, upload.size, upload.media_type, width, height, now_ms, content_key))
            kept = True
        except Exception as e:
            if not _is_integrity_error(e):
                raise
    elif not row[0]:  # a partial upload begun before schema 3: its chunks, if any, are under blob_id
        tx.execute("UPDATE blobs SET size = ?, media_type = ?, complete = 1, width = ?, height = ?, "
                   "content_key = ? WHERE blob_id = ?",
                   (upload.size, upload.media_type, width, height, content_key, blob_id))
        if content_key is not None:
            tx.execute("DELETE FROM blob_chunks WHERE blob_id = ?", (blob_id,))
        kept = True
    if not kept and content_key is not None:
        tx.execute("DELETE FROM blob_chunks WHERE blob_id = ?", (content_key,))
    _record_uploader(tx, blob_id, upload.uid, upload.name)
    end_upload(tx, upload)
    return kept


def end_upload(tx: Any, upload: UploadRow) -> None:
    """Forget an upload (its bytes did not match the hash), unless a new one has replaced it."""
    tx.execute("DELETE FROM blob_uploads WHERE blob_id = ? AND uid = ? AND upload_key = ?",
               (upload.blob_id, upload.uid, upload.key))


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
    """Where file content lives; every method returns a Deferred.

    Bytes being uploaded are staged under the upload's key until verified; `seal` makes them the blob's.
    """

    def staged(self, key: str) -> defer.Deferred:
        """Bytes staged so far under `key`."""

    def append(self, key: str, offset: int, data: bytes) -> defer.Deferred:
        """Stage bytes at `offset`, which must be the staged size (ValueError otherwise); the new size."""

    def digest(self, key: str) -> defer.Deferred:
        """SHA-256 hex of the staged bytes (when all have arrived)."""

    def head(self, key: str, length: int) -> defer.Deferred:
        """The first `length` staged bytes (to read image dimensions)."""

    def seal(self, key: str, blob_id: str) -> defer.Deferred:
        """The staged bytes are verified: make them the blob's content (unless it has one already).

        Fires with the content key to record in `blobs.content_key` (see `finish_upload`), or None.
        """

    def discard(self, key: str) -> defer.Deferred:
        """Drop staged bytes (a hash mismatch, an abandoned upload)."""

    def read(self, blob_id: str, offset: int, length: int) -> defer.Deferred:
        """Up to `length` bytes from `offset` of a complete blob."""


class FileBlobStore:
    """Blobs as files: ROOT/partial/KEY while being uploaded, ROOT/ID[:2]/ID once verified."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "partial").mkdir(parents=True, exist_ok=True)

    def _partial(self, key: str) -> Path:
        return self.root / "partial" / key

    def _final(self, blob_id: str) -> Path:
        return self.root / blob_id[:2] / blob_id

    def staged(self, key: str) -> defer.Deferred:
        def size() -> int:
            path = self._partial(key)
            return path.stat().st_size if path.exists() else 0

        return threads.deferToThread(size)

    def append(self, key: str, offset: int, data: bytes) -> defer.Deferred:
        def write() -> int:
            with open(self._partial(key), "ab") as f:
                if f.tell() != offset:
                    raise ValueError(f"stored size is {f.tell()}, not {offset}")
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
                return f.tell()

        return threads.deferToThread(write)

    def digest(self, key: str) -> defer.Deferred:
        def sha() -> str:
            h = hashlib.sha256()
            with open(self._partial(key), "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            return h.hexdigest()

        return threads.deferToThread(sha)

    def head(self, key: str, length: int) -> defer.Deferred:
        def read() -> bytes:
            with open(self._partial(key), "rb") as f:
                return f.read(length)

        return threads.deferToThread(read)

    def seal(self, key: str, blob_id: str) -> defer.Deferred:
        def move() -> None:
            final, partial = self._final(blob_id), self._partial(key)
            if final.exists():  # another user's copy was verified first: the same bytes
                partial.unlink(missing_ok=True)
                return
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, final)

        return threads.deferToThread(move)

    def discard(self, key: str) -> defer.Deferred:
        return threads.deferToThread(lambda: self._partial(key).unlink(missing_ok=True))

    def read(self, blob_id: str, offset: int, length: int) -> defer.Deferred:
        def read() -> bytes:
            with open(self._final(blob_id), "rb") as f:
                f.seek(offset)
                return f.read(length)

        return threads.deferToThread(read)


class SqlBlobStore:
    """Blobs as chunk rows in the shared database: any node can resume or serve them.

    An upload is staged under its key; sealing it only records that key as the blob's `content_key`
    (in `finish_upload`, the same transaction that marks the blob complete), so nothing is copied.
    """

    def __init__(self, store: Any) -> None:
        self.store = store

    def staged(self, key: str) -> defer.Deferred:
        return self.store.run(_stored, key)

    def append(self, key: str, offset: int, data: bytes) -> defer.Deferred:
        return self.store.run(_append, key, offset, data)

    def digest(self, key: str) -> defer.Deferred:
        return self.store.run(_digest, key)

    def head(self, key: str, length: int) -> defer.Deferred:
        return self.store.run(_read, key, 0, length)

    def seal(self, key: str, blob_id: str) -> defer.Deferred:
        return defer.succeed(key)

    def discard(self, key: str) -> defer.Deferred:
        return self.store.run(lambda tx: tx.execute("DELETE FROM blob_chunks WHERE blob_id = ?", (key,)))

    def read(self, blob_id: str, offset: int, length: int) -> defer.Deferred:
        return self.store.run(_read_blob, blob_id, offset, length)


def _stored(tx: Any, key: str) -> int:
    row = tx.one("SELECT start_offset, LENGTH(data) FROM blob_chunks WHERE blob_id = ? "
                 "ORDER BY start_offset DESC LIMIT 1", (key,))
    return row[0] + row[1] if row else 0


def _append(tx: Any, key: str, offset: int, data: bytes) -> int:
    stored = _stored(tx, key)
    if stored != offset:
        raise ValueError(f"stored size is {stored}, not {offset}")
    try:
        tx.execute("INSERT INTO blob_chunks (blob_id, start_offset, data) VALUES (?, ?, ?)", (key, offset, data))
    except Exception as e:
        if _is_integrity_error(e):  # the same chunk, appended at the same moment on another node
            raise ValueError(f"a chunk at {offset} is stored already") from None
        raise
    return offset + len(data)


def _digest(tx: Any, key: str) -> str:
    h = hashlib.sha256()
    cursor = tx.execute("SELECT data FROM blob_chunks WHERE blob_id = ? ORDER BY start_offset", (key,))
    while rows := cursor.fetchmany(16):
        for (data,) in rows:
            h.update(data)
    return h.hexdigest()


def _read_blob(tx: Any, blob_id: str, offset: int, length: int) -> bytes:
    row = tx.one("SELECT content_key FROM blobs WHERE blob_id = ?", (blob_id,))
    return _read(tx, row[0] if row and row[0] else blob_id, offset, length)


def _read(tx: Any, key: str, offset: int, length: int) -> bytes:
    end = offset + length
    rows = tx.all("SELECT start_offset, data FROM blob_chunks WHERE blob_id = ? AND start_offset < ? "
                  "AND start_offset + LENGTH(data) > ? ORDER BY start_offset", (key, end, offset))
    out = b"".join(bytes(data) for _, data in rows)
    if not rows:
        return b""
    first = rows[0][0]
    return out[offset - first:end - first]
