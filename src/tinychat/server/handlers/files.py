"""Files: resumable chunked uploads verified by SHA-256, ranged downloads for thread members.

Knowing a file's SHA-256 grants nothing: an upload completes at once only for
a caller who may read the complete file already; anyone else sends every byte,
either stored (a new file) or compared with the stored file (a known one), and
becomes one of its uploaders only when all of it arrived and matched.  The
state of each upload is in the store (see `store/blobs.py`), so a client
resumes from BEGIN_UPLOAD's offset on any node.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from twisted.internet import defer

from tinychat.protocol import (
    BeginUpload,
    Download,
    DownloadChunk,
    ErrorCode,
    UploadChunk,
    UploadState,
)
from tinychat.server.errors import refuse
from tinychat.server.imagesize import image_size
from tinychat.server.store import blobs as blob_rows

if TYPE_CHECKING:
    from tinychat.server.connection import ChatConnection
    from tinychat.server.node import Services
    from tinychat.server.router import Router
    from tinychat.server.store.blobs import BlobStore, UploadRow

SHA256 = re.compile(r"^[0-9a-f]{64}$")
_IMAGE_HEAD = 64 * 1024
T = TypeVar("T")


class FileHandlers:
    """BEGIN_UPLOAD, UPLOAD_CHUNK and DOWNLOAD."""

    def __init__(self, services: Services, blobs: BlobStore) -> None:
        self.s = services
        self.blobs = blobs
        # Pipelined chunks of one upload must be handled in the order they arrived, and the
        # database or file work behind them runs on several threads: a lock per (blob, user) keeps
        # order (and makes a BEGIN_UPLOAD answer after the chunks sent before it).
        self._locks: dict[tuple[str, int], defer.DeferredLock] = {}

    def install(self, router: Router) -> None:
        router.add(BeginUpload, self.begin)
        router.add(UploadChunk, self.chunk)
        router.add(Download, self.download)

    def _now_ms(self) -> int:
        return int(self.s.clock.seconds() * 1000)

    @property
    def chunk_bytes(self) -> int:
        return self.s.config.file_chunk

    async def name_of(self, blob_id: str, uid: int) -> str:
        return await self.s.store.blob_name(blob_id, uid)

    async def _locked(self, key: tuple[str, int], work: Callable[[], Awaitable[T]]) -> T:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = defer.DeferredLock()
        await lock.acquire()  # taken before any other await: FIFO in arrival order
        try:
            return await work()
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(key, None)

    def _state(self, req: BeginUpload | UploadChunk, blob_id: str, offset: int, complete: bool) -> UploadState:
        return UploadState(request_id=req.request_id, blob_id=blob_id, offset=offset, complete=complete,
                           chunk_bytes=self.chunk_bytes)

    async def begin(self, conn: ChatConnection, req: BeginUpload) -> UploadState:
        if not SHA256.match(req.sha256):
            raise refuse(ErrorCode.INVALID_ARGUMENT, "sha256 is 64 lowercase hex digits")
        limit = self.s.config.max_upload_bytes
        if req.size > limit:
            raise refuse(ErrorCode.TOO_LARGE, f"files are limited to {limit} bytes")
        if req.size == 0:
            raise refuse(ErrorCode.INVALID_ARGUMENT, "an empty file cannot be uploaded")
        uid = conn.session.uid
        return await self._locked((req.sha256, uid), lambda: self._begin(uid, req))

    async def _begin(self, uid: int, req: BeginUpload) -> UploadState:
        start = await self.s.store.begin_blob(req.sha256, req.size, req.media_type, uid, req.name, self._now_ms())
        if start.stale_key is not None:  # an upload of this caller's that this one replaces
            await self.blobs.discard(start.stale_key)
        upload = start.upload
        if upload is None:  # the caller may read the complete file already
            return self._state(req, req.sha256, start.blob.size, True)
        # A known file and a new one look the same: offset 0 at first, then what this caller sent.
        offset = upload.proven if upload.proving else await self.blobs.staged(upload.key)
        return self._state(req, req.sha256, offset, False)

    async def chunk(self, conn: ChatConnection, req: UploadChunk) -> UploadState:
        uid = conn.session.uid
        return await self._locked((req.blob_id, uid), lambda: self._chunk(uid, req))

    async def _chunk(self, uid: int, req: UploadChunk) -> UploadState:
        upload = await self.s.store.run(blob_rows.get_upload, req.blob_id, uid)
        if upload is None:
            blob = await self.s.store.blob(req.blob_id)
            if blob is not None and blob.complete and await self.s.store.may_read_blob(req.blob_id, uid):
                return self._state(req, blob.blob_id, blob.size, True)  # a late chunk of a finished upload
            raise refuse(ErrorCode.BLOB_NOT_FOUND, "begin the upload first")
        if not req.data or len(req.data) > self.chunk_bytes or req.offset + len(req.data) > upload.size:
            raise refuse(ErrorCode.INVALID_ARGUMENT,
                         f"a chunk has 1 to {self.chunk_bytes} bytes and ends within the file")
        if upload.proving:
            return await self._prove(upload, req)
        try:
            offset = await self.blobs.append(upload.key, req.offset, req.data)
        except ValueError:
            stored = await self.blobs.staged(upload.key)
            raise refuse(ErrorCode.OFFSET_MISMATCH, f"the server holds {stored} bytes; resume at offset {stored}")
        if offset < upload.size:
            return self._state(req, upload.blob_id, offset, False)
        if await self.blobs.digest(upload.key) != upload.blob_id:
            await self.blobs.discard(upload.key)
            await self.s.store.run(blob_rows.end_upload, upload)
            raise refuse(ErrorCode.HASH_MISMATCH)
        width, height = image_size(await self.blobs.head(upload.key, _IMAGE_HEAD))
        content_key = await self.blobs.seal(upload.key, upload.blob_id)
        await self.s.store.run(blob_rows.finish_upload, upload, width, height, content_key, self._now_ms())
        return self._state(req, upload.blob_id, offset, True)

    async def _prove(self, upload: UploadRow, req: UploadChunk) -> UploadState:
        """Compare a chunk with the complete blob; a difference is refused after the last chunk."""
        if req.offset != upload.proven:
            raise refuse(ErrorCode.OFFSET_MISMATCH,
                         f"the server holds {upload.proven} bytes; resume at offset {upload.proven}")
        stored = await self.blobs.read(upload.blob_id, req.offset, len(req.data))
        matched = hmac.compare_digest(stored, req.data)
        offset, outcome = await self.s.store.run(blob_rows.advance_proof, upload.blob_id, upload.uid, req.offset,
                                                 len(req.data), matched)
        if outcome == blob_rows.DIFFERENT:
            raise refuse(ErrorCode.HASH_MISMATCH)
        return self._state(req, upload.blob_id, offset, outcome == blob_rows.PROVEN)

    async def download(self, conn: ChatConnection, req: Download) -> DownloadChunk:
        blob = await self.s.store.blob(req.blob_id)
        if blob is None or not blob.complete or not await self.s.store.may_read_blob(req.blob_id, conn.session.uid):
            raise refuse(ErrorCode.BLOB_NOT_FOUND)
        if req.length == 0 or req.length > self.chunk_bytes:
            raise refuse(ErrorCode.INVALID_ARGUMENT, f"ask for 1 to {self.chunk_bytes} bytes")
        data = b"" if req.offset >= blob.size else await self.blobs.read(blob.blob_id, req.offset, req.length)
        return DownloadChunk(request_id=req.request_id, blob_id=blob.blob_id, offset=req.offset, size=blob.size,
                             data=data)
