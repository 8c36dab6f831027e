"""A real `twistd -n tinychat` node: handshake, ping, errors, limits, idle timeout."""

from __future__ import annotations

import socket
import struct

import pytest

from tests.reactor_thread import SyncConnection
from tinychat.client.errors import NotLoggedInError
from tinychat.protocol import (
    HEADER,
    Error,
    ErrorCode,
    FrameDecoder,
    Hello,
    NodeAssignment,
    Ping,
    Pong,
    Sync,
    WhichNode,
    encode,
)

pytestmark = pytest.mark.integration


def raw_socket(node) -> socket.socket:
    sock = socket.create_connection((node.host, node.port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket) -> list:
    """Every message the server sends until it closes the connection."""
    decoder = FrameDecoder()
    messages = []
    while chunk := sock.recv(65536):
        messages.extend(decoder.feed(chunk))
    return messages


def hello_frame(request_id: int = 1) -> bytes:
    return encode(Hello(request_id=request_id, min_version=1, max_version=1, client_name="raw"))


def test_client_connects_handshakes_and_pings(node):
    client = SyncConnection.open(node.endpoint)
    welcome = client.conn.welcome
    assert welcome.version == 1
    assert welcome.node_id == "test-node"
    assert welcome.max_frame_bytes == 1024 * 1024
    assert welcome.heartbeat_interval_ms == 30_000
    assert isinstance(client.request(Ping), Pong)
    client.close()


def test_pipelined_requests_are_answered_by_request_id(node):
    client = SyncConnection.open(node.endpoint)
    from twisted.internet import defer

    from tests.reactor_thread import call

    def many():
        return defer.gatherResults([client.conn.request(Ping) for _ in range(200)])

    pongs = call(many)
    assert len({p.request_id for p in pongs}) == 200
    client.close()


def test_requests_before_login_are_refused_and_the_connection_stays(node):
    client = SyncConnection.open(node.endpoint)
    with pytest.raises(NotLoggedInError):
        client.request(Sync)
    assert isinstance(client.request(Ping), Pong)
    client.close()


def test_which_node_answers_this_nodes_address(node):
    client = SyncConnection.open(node.endpoint)
    answer = client.request(WhichNode)
    assert isinstance(answer, NodeAssignment)
    assert answer.node_id == "test-node"
    assert answer.address == f"tcp:host={node.host}:port={node.port}"
    assert answer.connections >= 1
    client.close()


def test_malformed_frame_gets_an_error_and_a_close(node):
    sock = raw_socket(node)
    # A PING whose body is 2 bytes instead of the u32 request id.
    sock.sendall(hello_frame() + HEADER.pack(Ping.MSG_ID, 2) + b"\x00\x01")
    messages = read_until_closed(sock)
    assert messages[-1].code is ErrorCode.MALFORMED_FRAME
    assert messages[-1].request_id == 0


def test_first_frame_must_be_hello(node):
    sock = raw_socket(node)
    sock.sendall(encode(Ping(request_id=9)))
    (error,) = read_until_closed(sock)
    assert isinstance(error, Error) and error.code is ErrorCode.HANDSHAKE_REQUIRED


def test_unsupported_version_is_refused(node):
    sock = raw_socket(node)
    sock.sendall(encode(Hello(request_id=4, min_version=7, max_version=9, client_name="future")))
    (error,) = read_until_closed(sock)
    assert error.code is ErrorCode.UNSUPPORTED_VERSION and error.request_id == 4


def test_oversized_length_is_refused_without_reading_the_body(node):
    sock = raw_socket(node)
    sock.sendall(hello_frame())
    # Declare a 2 GiB body and send none of it: the answer must come at once.
    sock.sendall(struct.pack(">HI", Ping.MSG_ID, 2**31))
    messages = read_until_closed(sock)
    assert messages[-1].code is ErrorCode.FRAME_TOO_LARGE


def test_unknown_message_id_is_refused(node):
    sock = raw_socket(node)
    sock.sendall(hello_frame() + struct.pack(">HI", 0x7777, 0))
    messages = read_until_closed(sock)
    assert messages[-1].code is ErrorCode.UNKNOWN_MESSAGE


def test_silent_connection_is_closed_after_the_idle_timeout(node_factory):
    with node_factory("--heartbeat-interval", "0.5", "--idle-timeout", "1") as quick:
        sock = raw_socket(quick)
        sock.settimeout(10)
        (error,) = read_until_closed(sock)
        assert error.code is ErrorCode.TIMEOUT


def test_client_heartbeats_keep_the_connection_open(node_factory):
    with node_factory("--heartbeat-interval", "0.2", "--idle-timeout", "0.6") as quick:
        client = SyncConnection.open(quick.endpoint)
        # Through several idle timeouts the heartbeats keep the session alive.
        from twisted.internet import reactor, task

        from tests.reactor_thread import call

        call(task.deferLater, reactor, 1.5, lambda: None)
        assert isinstance(client.request(Ping), Pong)
        client.close()


def test_listening_on_a_taken_port_fails_loudly(node, node_factory, tmp_path):
    import subprocess

    from tinychat.testing.nodes import TWISTD

    result = subprocess.run(
        [TWISTD, "-n", "--pidfile=", "tinychat", "--listen", f"tcp:{node.port}:interface=127.0.0.1",
         "--db", f"sqlite:///{tmp_path / 'other.sqlite3'}"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "Address already in use" in result.stdout + result.stderr


def test_help_documents_every_option():
    import subprocess

    from tinychat.testing.nodes import TWISTD

    out = subprocess.run([TWISTD, "tinychat", "--help"], capture_output=True, text=True, timeout=60).stdout
    for option in ["--listen", "--db", "--redis", "--node-id", "--heartbeat-interval", "--idle-timeout",
                   "--max-frame", "--smtp-host", "--metrics", "--public-address"]:
        assert option in out
