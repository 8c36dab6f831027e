"""Files: resumable upload, verification, dedupe, permissions, download; one node and a cluster."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib

import pytest

from tests.chat import PASSWORD, SyncClient
from tests.cluster import running_cluster
from tinychat.client.errors import BlobNotFoundError, HashMismatchError, TooLargeError
from tinychat.protocol import BeginUpload, MessageKind, MessagePush, UploadChunk

pytestmark = pytest.mark.integration


def png(width: int, height: int) -> bytes:
    """A valid grey PNG of the given size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes([128]) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture
def pair(users):
    alice, bob = users.logged_in("alice"), users.logged_in("bob")
    users.friends(alice, bob)
    return alice, bob


def test_send_a_file_and_download_it(pair):
    alice, bob = pair
    data = os.urandom(300_000)
    seen = []
    blob_id = alice.upload(data, name="notes.bin", progress=lambda done, total: seen.append((done, total)))
    assert blob_id == hashlib.sha256(data).hexdigest()
    assert seen[-1] == (300_000, 300_000) and len(seen) > 2
    ack = alice.send_file(blob_id, to_uid=bob.uid, caption="the notes")
    message = bob.next_push(MessagePush).message
    assert (message.kind, message.text, message.seq) == (MessageKind.FILE, "the notes", ack.seq)
    assert (message.attachment.blob_id, message.attachment.name, message.attachment.size) == \
        (blob_id, "notes.bin", 300_000)
    assert bob.download(blob_id) == data
    assert bob.download(blob_id, offset=299_000) == data[299_000:]
    (stored,) = bob.history(message.thread_id).messages
    assert stored.attachment == message.attachment


def test_images_carry_their_dimensions(pair):
    alice, bob = pair
    blob_id = alice.upload(png(64, 48), name="pic.png")
    alice.send_file(blob_id, to_uid=bob.uid, image=True)
    message = bob.next_push(MessagePush).message
    assert message.kind is MessageKind.IMAGE
    assert (message.attachment.width, message.attachment.height, message.attachment.media_type) == \
        (64, 48, "image/png")


def test_hash_mismatch_is_refused_and_discarded(pair):
    alice, _ = pair
    data = os.urandom(100_000)
    claimed = hashlib.sha256(b"something else" + data[14:]).hexdigest()
    state = alice.request_raw(BeginUpload, name="x", size=len(data), media_type="", sha256=claimed)
    offset = state.offset
    chunk = state.chunk_bytes
    with pytest.raises(HashMismatchError):
        while offset < len(data):
            offset = alice.request_raw(UploadChunk, blob_id=claimed, offset=offset,
                                       data=data[offset:offset + chunk]).offset
    # The partial bytes are gone: a new attempt starts from zero.
    again = alice.request_raw(BeginUpload, name="x", size=len(data), media_type="", sha256=claimed)
    assert again.offset == 0 and not again.complete


def test_only_members_of_a_thread_carrying_a_file_may_download_it(users, pair):
    alice, bob = pair
    blob_id = alice.upload(os.urandom(10_000), name="secret.bin")
    eve = users.logged_in("eve")
    with pytest.raises(BlobNotFoundError):
        eve.download(blob_id)
    with pytest.raises(BlobNotFoundError):
        bob.download(blob_id)  # not sent to him yet
    alice.send_file(blob_id, to_uid=bob.uid)
    bob.next_push(MessagePush)
    assert len(bob.download(blob_id)) == 10_000
    users.friends(eve, alice)
    with pytest.raises(BlobNotFoundError):  # she cannot forward what she may not read
        eve.send_file(blob_id, to_uid=alice.uid)


def test_the_same_file_twice_is_stored_once(users, pair, backend, database, tmp_path):
    alice, bob = pair
    data = os.urandom(200_000)
    first = alice.upload(data, name="a.bin")
    progress = []
    second = bob.upload(data, name="b.bin", progress=lambda done, total: progress.append(done))
    assert first == second
    # Bob may not read Alice's file, so he sends it all (the server compares it with the stored bytes
    # instead of storing them again) and is then one of its uploaders.
    assert progress == [0, 65_536, 131_072, 196_608, 200_000]
    assert bob.download(second) == data
    for someone in (alice, bob):  # an uploader completes at once: nothing is sent again
        progress.clear()
        assert someone.upload(data, name="again.bin", progress=lambda done, total: progress.append(done)) == first
        assert progress == [200_000]
    if backend == "sqlite":  # the node runs in tmp_path with its blobs in ./blobs
        files = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
        assert [p.name for p in files] == [first]
    else:
        from tinychat.server.store.migrations import connect_sync
        from tinychat.server.store.url import parse_database_url

        conn = connect_sync(parse_database_url(database))
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*), SUM(LENGTH(data)) FROM blob_chunks")
        assert cursor.fetchone() == (4, 200_000)  # 64 KiB chunks, once
        conn.close()


def test_uploads_over_the_limit_are_refused(node_factory, smtp_server):
    from tests.chat import Users
    from tests.conftest import FAST_HASHING, smtp_args

    with node_factory(*FAST_HASHING, *smtp_args(smtp_server), "--max-upload-bytes", "1000") as node:
        users = Users(node.endpoint, smtp_server.code_for)
        alice = users.logged_in("alice")
        with pytest.raises(TooLargeError):
            alice.upload(os.urandom(1001))
        assert alice.upload(os.urandom(1000))
        users.close()


@pytest.fixture
def cluster(tmp_path, redis_server, smtp_server):
    with running_cluster(tmp_path, redis_server, smtp_server.port, ("n1", "n2")) as running:
        yield running


def test_upload_interrupted_on_one_node_resumes_on_another(cluster, smtp_server):
    users = cluster.users(smtp_server.code_for)
    users.register("alice")
    users.register("bob")
    alice = SyncClient(cluster.endpoint("n1"))
    alice.login("alice", PASSWORD)
    data = os.urandom(1_000_000)
    alice.upload(data, name="big.bin", chunk_limit=8)  # about half, then the connection drops
    alice.close()
    moved = SyncClient(cluster.endpoint("n2"))
    moved.login("alice", PASSWORD)
    progress = []
    blob_id = moved.upload(data, name="big.bin", progress=lambda done, total: progress.append(done))
    assert progress[0] == 8 * 64 * 1024  # resumed, not restarted
    assert progress[-1] == 1_000_000
    bob = SyncClient(cluster.endpoint("n1"))
    bob.login("bob", PASSWORD)
    users.friends(moved, bob)
    moved.send_file(blob_id, to_uid=bob.uid)
    assert bob.next_push(MessagePush).message.attachment.size == 1_000_000
    assert bob.download(blob_id) == data
    # Carol has the same file: her upload is compared with the stored one, not stored again, and the
    # offset she has proven is kept in the database, so it too resumes on another node.
    users.register("carol")
    carol = SyncClient(cluster.endpoint("n2"))
    carol.login("carol", PASSWORD)
    assert carol.upload(data, name="mine.bin", chunk_limit=5) == blob_id
    carol.close()
    carol = SyncClient(cluster.endpoint("n1"))
    carol.login("carol", PASSWORD)
    progress.clear()
    carol.upload(data, name="mine.bin", progress=lambda done, total: progress.append(done))
    assert progress[0] == 5 * 64 * 1024 and progress[-1] == 1_000_000
    assert carol.download(blob_id) == data
