"""Files: resumable chunked uploads verified by SHA-256, ranged downloads for thread members."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from tinychat.server.connection import ChatConnection
    from tinychat.server.node import Services
    from tinychat.server.router import Router
    from tinychat.server.store.blobs import BlobStore

SHA256 = re.compile(r"^[0-9a-f]{64}$")
_IMAGE_HEAD = 64 * 1024


class FileHandlers:
    """Uploads append at the stored size, so a client resumes from BEGIN_UPLOAD's offset on any node."""

    def __init__(self, services: Services, blobs: BlobStore) -> None:
        self.s = services
        self.blobs = blobs
        # Pipelined chunks of one upload must be appended in the order they arrived, and the
        # database or file work behind them runs on several threads: a lock per blob keeps order.
        self._locks: dict[str, defer.DeferredLock] = {}

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

    async def begin(self, conn: ChatConnection, req: BeginUpload) -> UploadState:
        if not SHA256.match(req.sha256):
            raise refuse(ErrorCode.INVALID_ARGUMENT, "sha256 is 64 lowercase hex digits")
        limit = self.s.config.max_upload_bytes
        if req.size > limit:
            raise refuse(ErrorCode.TOO_LARGE, f"files are limited to {limit} bytes")
        if req.size == 0:
            raise refuse(ErrorCode.INVALID_ARGUMENT, "an empty file cannot be uploaded")
        blob = await self.s.store.begin_blob(req.sha256, req.size, req.media_type, conn.session.uid, req.name,
                                             self._now_ms())
        if blob.size != req.size:
            raise refuse(ErrorCode.HASH_MISMATCH, "a file with this hash has another size")
        offset = blob.size if blob.complete else await self.blobs.stored(blob.blob_id)
        return UploadState(request_id=req.request_id, blob_id=blob.blob_id, offset=offset, complete=blob.complete,
                           chunk_bytes=self.chunk_bytes)

    async def chunk(self, conn: ChatConnection, req: UploadChunk) -> UploadState:
        lock = self._locks.get(req.blob_id)
        if lock is None:
            lock = self._locks[req.blob_id] = defer.DeferredLock()
        await lock.acquire()  # taken before any other await: FIFO in arrival order
        try:
            return await self._chunk(conn, req)
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(req.blob_id, None)

    async def _chunk(self, conn: ChatConnection, req: UploadChunk) -> UploadState:
        blob = await self.s.store.blob(req.blob_id)
        if blob is None or not await self.s.store.may_read_blob(req.blob_id, conn.session.uid):
            raise refuse(ErrorCode.BLOB_NOT_FOUND, "begin the upload first")
        if blob.complete:
            return UploadState(request_id=req.request_id, blob_id=blob.blob_id, offset=blob.size, complete=True,
                               chunk_bytes=self.chunk_bytes)
        if not req.data or len(req.data) > self.chunk_bytes or req.offset + len(req.data) > blob.size:
            raise refuse(ErrorCode.INVALID_ARGUMENT,
                         f"a chunk has 1 to {self.chunk_bytes} bytes and ends within the file")
        try:
            offset = await self.blobs.append(blob.blob_id, req.offset, req.data)
        except ValueError:
            stored = await self.blobs.stored(blob.blob_id)
            raise refuse(ErrorCode.OFFSET_MISMATCH, f"the server holds {stored} bytes; resume at offset {stored}")
        complete = False
        if offset == blob.size:
            if await self.blobs.digest(blob.blob_id) != blob.blob_id:
                await self.blobs.discard(blob.blob_id)
                raise refuse(ErrorCode.HASH_MISMATCH)
            width, height = image_size(await self.blobs.head(blob.blob_id, _IMAGE_HEAD))
            await self.blobs.seal(blob.blob_id)
            await self.s.store.complete_blob(blob.blob_id, width, height)
            complete = True
        return UploadState(request_id=req.request_id, blob_id=blob.blob_id, offset=offset, complete=complete,
                           chunk_bytes=self.chunk_bytes)

    async def download(self, conn: ChatConnection, req: Download) -> DownloadChunk:
        blob = await self.s.store.blob(req.blob_id)
        if blob is None or not blob.complete or not await self.s.store.may_read_blob(req.blob_id, conn.session.uid):
            raise refuse(ErrorCode.BLOB_NOT_FOUND)
        if req.length == 0 or req.length > self.chunk_bytes:
            raise refuse(ErrorCode.INVALID_ARGUMENT, f"ask for 1 to {self.chunk_bytes} bytes")
        data = b"" if req.offset >= blob.size else await self.blobs.read(blob.blob_id, req.offset, req.length)
        return DownloadChunk(request_id=req.request_id, blob_id=blob.blob_id, offset=req.offset, size=blob.size,
                             data=data)
