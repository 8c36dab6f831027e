"""TLS: a node on an `ssl:` endpoint, clients on `tls:` endpoints that verify its certificate.

The test makes its own certificate authority and a server certificate for
127.0.0.1 and localhost, runs the whole chat flow over TLS with a client that
trusts that CA (`trustRoots=DIR`), and checks that clients trusting another CA,
or only the system's CAs (the default), are refused.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import defer, reactor
from twisted.internet.endpoints import clientFromString, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from tests.chat import Users
from tests.conftest import FAST_HASHING, smtp_args
from tests.reactor_thread import SyncConnection, call
from tinychat.client.errors import ConnectionClosedError, RequestTimeoutError
from tinychat.protocol import Hello, MessagePush, NodeAssignment, Ping, Pong, WhichNode, encode
from tinychat.testing.nodes import NodeProcess, run_node

pytestmark = pytest.mark.integration


@dataclass
class Authority:
    """A certificate authority: its key, its certificate, and a directory holding only that certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    trust_dir: Path


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def make_authority(directory: Path, name: str) -> Authority:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5)).not_valid_after(_now() + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    trust_dir = directory / f"trust-{name}"
    trust_dir.mkdir()
    (trust_dir / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Authority(key, cert, trust_dir)


def issue_server_certificate(ca: Authority, directory: Path) -> tuple[Path, Path]:
    """(certificate file, key file) for 127.0.0.1 and localhost, signed by `ca`."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tinychat test node")]))
        .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(minutes=5)).not_valid_after(_now() + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    cert_file, key_file = directory / "node-cert.pem", directory / "node-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return make_authority(tmp_path, "tinychat-test-ca")


@pytest.fixture
def tls_node(tmp_path: Path, authority: Authority, smtp_server) -> Iterator[NodeProcess]:
    cert_file, key_file = issue_server_certificate(authority, tmp_path)
    listen = f"ssl:0:interface=127.0.0.1:privateKey={key_file}:certKey={cert_file}"
    with run_node(["--listen", listen, "--db", f"sqlite:///{tmp_path / 'tls.sqlite3'}", "--node-id", "tls-node",
                   *FAST_HASHING, *smtp_args(smtp_server)], tmp_path) as node:
        yield node


def test_the_ready_line_and_node_assignment_name_the_tls_listener(tls_node: NodeProcess, authority: Authority):
    assert tls_node.scheme == "ssl"
    assert f"listening on ssl:127.0.0.1:{tls_node.port}" in tls_node.log_text()
    client = SyncConnection.open(tls_node.tls_endpoint(authority.trust_dir))
    assignment = client.request(WhichNode)
    assert isinstance(assignment, NodeAssignment)
    assert assignment.address == f"tls:host=127.0.0.1:port={tls_node.port}"
    client.close()


def test_the_whole_chat_flow_runs_over_tls(tls_node: NodeProcess, authority: Authority, smtp_server):
    users = Users(tls_node.tls_endpoint(authority.trust_dir), smtp_server.code_for)
    try:
        alice = users.logged_in("alice")
        bob = users.logged_in("bob")
        (found,) = alice.search("bob")
        assert found.uid == bob.uid
        thread_id = users.friends(alice, bob)
        ack = alice.send_text("hello over TLS 🔒", to_uid=bob.uid)
        push = bob.next_push(MessagePush)
        assert (push.message.seq, push.message.text) == (ack.seq, "hello over TLS 🔒")
        bob.send_text("and back", thread_id=thread_id)
        page = alice.history(thread_id)
        assert [m.text for m in page.messages] == ["hello over TLS 🔒", "and back"]
        assert isinstance(alice.ping(), Pong)
    finally:
        users.close()


def tls_failure(endpoint: str) -> str:
    """Why a TLS connection to `endpoint` ended, as seen by a client that sends HELLO and waits."""
    ended: defer.Deferred = defer.Deferred()

    class Probe(Protocol):
        def connectionMade(self) -> None:
            self.transport.write(encode(Hello(request_id=1, min_version=1, max_version=1, client_name="probe")))

        def dataReceived(self, data: bytes) -> None:
            ended.callback("answered")  # the handshake succeeded: not what these tests expect

        def connectionLost(self, reason: Failure) -> None:
            if not ended.called:
                ended.callback(repr(reason.value))

    def attempt() -> defer.Deferred:
        connectProtocol(clientFromString(reactor, endpoint), Probe()).addErrback(
            lambda f: ended.called or ended.callback(repr(f.value)))
        return ended

    return call(attempt)


def test_a_client_trusting_another_ca_is_refused(tls_node: NodeProcess, authority: Authority, tmp_path: Path):
    stranger = make_authority(tmp_path, "some-other-ca")
    assert "certificate verify failed" in tls_failure(tls_node.tls_endpoint(stranger.trust_dir))
    with pytest.raises(ConnectionClosedError):  # and the client library gives up, without a session
        SyncConnection.open(tls_node.tls_endpoint(stranger.trust_dir))
    trusted = SyncConnection.open(tls_node.tls_endpoint(authority.trust_dir))  # the node is unharmed
    assert isinstance(trusted.request(Ping), Pong)
    trusted.close()


def test_by_default_a_client_trusts_only_the_system_cas(tls_node: NodeProcess):
    # No trustRoots: the platform's CAs, which do not include the test CA.
    assert "certificate verify failed" in tls_failure(tls_node.tls_endpoint())


def test_a_plaintext_client_gets_no_service_from_a_tls_listener(tls_node: NodeProcess):
    with pytest.raises((ConnectionClosedError, RequestTimeoutError)):
        SyncConnection.open(f"tcp:host=127.0.0.1:port={tls_node.port}", request_timeout=5)
