"""A real SMTP server inside the test process, built with twisted.mail.

It listens on a free port of 127.0.0.1 in the reactor thread, can offer and
require STARTTLS (with a self-signed certificate made at test time) and can
require AUTH LOGIN/PLAIN.  Every received message is parsed with the email
package and kept per envelope recipient; the test thread blocks on
`wait_for_mail` / `code_for` until the mail arrives.

Fixtures: `smtp_server` (plain, no TLS, no AUTH) and `smtp_server_factory`
(call it with `starttls=` / `credentials=`); both stop their servers at teardown.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from functools import cache
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer, reactor, ssl
from twisted.internet.interfaces import (
    IListeningPort,
    IOpenSSLClientConnectionCreator,
    IOpenSSLContextFactory,
)
from twisted.mail import imap4, smtp
from twisted.mail.interfaces import IMessageDelivery, IMessageSMTP
from zope.interface import implementer

from tests.reactor_thread import call

CODE = re.compile(r"\b(\d{6})\b")
HOST = "127.0.0.1"


@dataclass(frozen=True)
class ReceivedMail:
    """One message as delivered to one envelope recipient."""

    envelope_from: str
    recipient: str
    message: EmailMessage
    tls: bool
    user: str | None


@cache
def self_signed_certificate(host: str = HOST) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) valid for `host` and localhost; made once per run."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@implementer(IOpenSSLContextFactory)
class _ServerTLS:
    """STARTTLS context for the server, fed cryptography objects (pyOpenSSL's are deprecated)."""

    def __init__(self, cert_pem: bytes, key_pem: bytes) -> None:
        self._cert = x509.load_pem_x509_certificate(cert_pem)
        self._key = serialization.load_pem_private_key(key_pem, password=None)

    def getContext(self) -> SSL.Context:
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.use_certificate(self._cert)
        context.use_privatekey(self._key)  # type: ignore[arg-type]
        return context


@implementer(IMessageSMTP)
class _Message:
    """Collects the lines of one DATA transfer for one recipient."""

    def __init__(self, server: SmtpServer, envelope_from: str, recipient: str, tls: bool,
                 user: str | None) -> None:
        self._server = server
        self._envelope = (envelope_from, recipient, tls, user)
        self._lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self._lines.append(line)

    def eomReceived(self) -> defer.Deferred[bytes]:
        envelope_from, recipient, tls, user = self._envelope
        parsed = BytesParser(policy=default_policy).parsebytes(b"\n".join(self._lines) + b"\n")
        assert isinstance(parsed, EmailMessage)
        self._server._received(ReceivedMail(envelope_from, recipient, parsed, tls, user))
        return defer.succeed(b"queued")

    def connectionLost(self) -> None:
        self._lines.clear()


@implementer(IMessageDelivery)
class _Delivery:
    """Accepts every sender and recipient; remembers who logged in."""

    def __init__(self, server: SmtpServer, user: str | None) -> None:
        self._server = server
        self._user = user

    def receivedHeader(self, helo: tuple[bytes, bytes], origin: smtp.Address,
                       recipients: list[smtp.User]) -> bytes:
        return b"Received: from " + helo[0] + b" ([" + helo[1] + b"]) by tests.smtp_server"

    def validateFrom(self, helo: tuple[bytes, bytes], origin: smtp.Address) -> smtp.Address:
        return origin

    def validateTo(self, user: smtp.User) -> Callable[[], _Message]:
        protocol = user.protocol
        tls = bool(getattr(protocol, "startedTLS", False))
        envelope_from = str(user.orig)
        recipient = str(user.dest)
        return lambda: _Message(self._server, envelope_from, recipient, tls, self._user)


@implementer(IRealm)
class _Realm:
    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    def requestAvatar(self, avatar_id: bytes, mind: object, *interfaces: Any) -> tuple[Any, Any, Any]:
        if IMessageDelivery not in interfaces:
            raise NotImplementedError("only IMessageDelivery avatars")
        return IMessageDelivery, _Delivery(self._server, avatar_id.decode()), lambda: None


class _ServerProtocol(smtp.ESMTP):
    """ESMTP that, when told to, insists on STARTTLS before AUTH/MAIL and on AUTH before MAIL."""

    server: SmtpServer

    def connectionMade(self) -> None:
        super().connectionMade()
        self.server._connections.add(self)

    def connectionLost(self, reason: Any) -> None:
        self.server._connections.discard(self)
        super().connectionLost(reason)

    def _needs_tls(self) -> bool:
        return self.server.starttls and not self.startedTLS

    def extensions(self) -> dict[bytes, Any]:
        ext = super().extensions()
        if self._needs_tls():
            ext.pop(b"AUTH", None)  # RFC 4954: no plain-text passwords before TLS.
        return ext

    def ext_AUTH(self, rest: bytes) -> None:
        if self._needs_tls():
            self.sendCode(530, b"5.7.0 Must issue a STARTTLS command first")
        else:
            super().ext_AUTH(rest)

    def do_MAIL(self, rest: bytes) -> None:
        if self._needs_tls():
            self.sendCode(530, b"5.7.0 Must issue a STARTTLS command first")
        elif self.server.credentials and not self.authenticated:
            self.sendCode(530, b"5.7.0 Authentication required")
        else:
            super().do_MAIL(rest)


class _Factory(smtp.SMTPFactory):
    domain = b"localhost"
    protocol = _ServerProtocol

    def __init__(self, server: SmtpServer, tls: _ServerTLS | None) -> None:
        portal = None
        if server.credentials:
            checker = InMemoryUsernamePasswordDatabaseDontUse()
            for user, password in server.credentials.items():
                checker.addUser(user.encode(), password.encode())
            portal = Portal(_Realm(server), [checker])
        super().__init__(portal)
        self._server = server
        self._tls = tls

    def buildProtocol(self, addr: Any) -> _ServerProtocol:
        challengers = {b"LOGIN": smtp.LOGINCredentials, b"PLAIN": imap4.PLAINCredentials}
        protocol = _ServerProtocol(challengers if self.portal else {}, self._tls)
        protocol.factory = self
        protocol.server = self._server
        protocol.portal = self.portal
        protocol.host = self.domain
        if self.portal is None:
            protocol.delivery = _Delivery(self._server, None)
        return protocol


class SmtpServer:
    """An in-process SMTP server; start it with `start_smtp_server`."""

    def __init__(self, starttls: bool = False, credentials: Mapping[str, str] | None = None) -> None:
        self.host = HOST
        self.starttls = starttls
        self.credentials = dict(credentials or {})
        self.certificate_pem: bytes | None = None
        self._mails: list[ReceivedMail] = []
        self._unclaimed: list[ReceivedMail] = []
        self._condition = threading.Condition()
        self._connections: set[_ServerProtocol] = set()
        self._port: IListeningPort | None = None

    # -- reactor thread -------------------------------------------------------------------------

    def _listen(self) -> None:
        tls = None
        if self.starttls:
            cert_pem, key_pem = self_signed_certificate(self.host)
            self.certificate_pem = cert_pem
            tls = _ServerTLS(cert_pem, key_pem)
        self._port = reactor.listenTCP(0, _Factory(self, tls), interface=self.host)

    def _received(self, mail: ReceivedMail) -> None:
        with self._condition:
            self._mails.append(mail)
            self._unclaimed.append(mail)
            self._condition.notify_all()

    def _stop(self) -> defer.Deferred[None] | None:
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.abortConnection()
        port, self._port = self._port, None
        return defer.maybeDeferred(port.stopListening) if port is not None else None

    # -- test thread ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._port is not None, "server not listening"
        return self._port.getHost().port

    @property
    def messages(self) -> list[ReceivedMail]:
        """Every mail received so far, claimed or not, oldest first."""
        with self._condition:
            return list(self._mails)

    def wait_for_mail(self, to_address: str, timeout: float = 10.0) -> EmailMessage:
        """The oldest not yet claimed mail for `to_address` (claiming it); waits up to `timeout`."""
        return self.wait_for_delivery(to_address, timeout).message

    def wait_for_delivery(self, to_address: str, timeout: float = 10.0) -> ReceivedMail:
        """Like `wait_for_mail`, with the envelope, TLS state and login user."""
        wanted = to_address.lower()

        def find() -> ReceivedMail | None:
            return next((m for m in self._unclaimed if m.recipient.lower() == wanted), None)

        with self._condition:
            mail = self._condition.wait_for(find, timeout)
            if mail is None:
                raise AssertionError(f"no mail for {to_address} within {timeout:g} s")
            self._unclaimed.remove(mail)
            return mail

    def code_for(self, to_address: str, timeout: float = 10.0) -> str:
        """The 6-digit code in the next (unclaimed) mail for `to_address`."""
        body = self.wait_for_mail(to_address, timeout).get_body(preferencelist=("plain",))
        assert body is not None, "mail has no text/plain body"
        match = CODE.search(body.get_content())
        assert match is not None, f"no 6-digit code in mail for {to_address}"
        return match.group(1)

    def client_tls_options(self, hostname: str | None = None) -> IOpenSSLClientConnectionCreator:
        """Client TLS settings trusting this server's self-signed certificate (for SmtpMailer)."""
        assert self.certificate_pem is not None, "server started without starttls"
        trust = ssl.Certificate.loadPEM(self.certificate_pem)
        return ssl.optionsForClientTLS(hostname or self.host, trustRoot=trust)

    def stop(self) -> None:
        call(self._stop)


def start_smtp_server(starttls: bool = False, credentials: Mapping[str, str] | None = None) -> SmtpServer:
    """Listen on a free port of 127.0.0.1 (from the test thread); `credentials` maps user to password."""
    server = SmtpServer(starttls=starttls, credentials=credentials)
    call(server._listen)
    return server


@pytest.fixture
def smtp_server_factory() -> Iterator[Callable[..., SmtpServer]]:
    """`smtp_server_factory(starttls=..., credentials={...})`; servers stop at teardown."""
    servers: list[SmtpServer] = []

    def start(starttls: bool = False, credentials: Mapping[str, str] | None = None) -> SmtpServer:
        server = start_smtp_server(starttls=starttls, credentials=credentials)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def smtp_server(smtp_server_factory: Callable[..., SmtpServer]) -> SmtpServer:
    """A plain SMTP server (no TLS, no AUTH) on a free port of 127.0.0.1."""
    return smtp_server_factory()
