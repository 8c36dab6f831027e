"""Verification mails: SmtpMailer against the in-process SMTP server, LogMailer's log line."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Callable, Iterator
from email.utils import parseaddr, parsedate_to_datetime

import pytest
from twisted.internet import reactor
from twisted.logger import formatEvent, globalLogPublisher

from tests.reactor_thread import call
from tests.smtp_server import SmtpServer, start_smtp_server
from tinychat.protocol import CodePurpose
from tinychat.server.config import SmtpConfig
from tinychat.server.mail import LogMailer, Mailer, MailError, SmtpMailer, make_mailer

LOG_LINE = re.compile(r"verification code for (\S+) \((\w+)\): (\d{6})")
SENDER = "noreply@tinychat.test"
USER, PASSWORD = "mailer@tinychat.test", "correct horse"


@pytest.fixture
def mail_servers() -> Iterator[Callable[..., SmtpServer]]:
    servers: list[SmtpServer] = []

    def start(**kwargs: object) -> SmtpServer:
        servers.append(start_smtp_server(**kwargs))  # type: ignore[arg-type]
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def smtp_config(server_port: int, **kwargs: object) -> SmtpConfig:
    return SmtpConfig(host="127.0.0.1", port=server_port, sender=SENDER, **kwargs)  # type: ignore[arg-type]


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_plain_delivery_registration_and_reset(mail_servers) -> None:
    server = mail_servers()
    mailer = SmtpMailer(smtp_config(server.port), reactor)

    assert call(mailer.send_code, "alice@example.com", "123456", CodePurpose.REGISTER, 15) is None
    delivery = server.wait_for_delivery("alice@example.com")
    message = delivery.message
    assert delivery.envelope_from == SENDER
    assert (delivery.tls, delivery.user) == (False, None)
    assert message["Subject"] == "Your TinyChat verification code"
    assert parseaddr(message["From"])[1] == SENDER
    assert message["To"] == "alice@example.com"
    assert parsedate_to_datetime(message["Date"]).tzinfo is not None
    assert re.fullmatch(r"<\S+@tinychat\.test>", message["Message-ID"])
    assert message.get_content_type() == "text/plain"
    body = message.get_content()
    assert "123456" in body and "15 minutes" in body and "creating" in body

    call(mailer.send_code, "alice@example.com", "654321", CodePurpose.RESET_PASSWORD, 1)
    reset = server.wait_for_mail("alice@example.com")
    assert reset["Subject"] == "Your TinyChat password reset code"
    assert "reset the password" in reset.get_content() and "1 minute." in reset.get_content()
    assert reset["Message-ID"] != message["Message-ID"]

    call(mailer.send_code, "Bob@Example.com", "111222", CodePurpose.REGISTER, 10)
    assert server.code_for("bob@example.com") == "111222"


def test_starttls_and_auth(mail_servers) -> None:
    server = mail_servers(starttls=True, credentials={USER: PASSWORD})
    config = smtp_config(server.port, username=USER, password=PASSWORD, starttls=True)
    mailer = SmtpMailer(config, reactor, context_factory=server.client_tls_options())

    call(mailer.send_code, "carol@example.com", "246810", CodePurpose.REGISTER, 15)
    delivery = server.wait_for_delivery("carol@example.com")
    assert (delivery.tls, delivery.user) == (True, USER)
    assert "246810" in delivery.message.get_content()


def test_wrong_password_fails(mail_servers) -> None:
    server = mail_servers(starttls=True, credentials={USER: PASSWORD})
    config = smtp_config(server.port, username=USER, password="wrong password", starttls=True)
    mailer = SmtpMailer(config, reactor, context_factory=server.client_tls_options())

    with pytest.raises(MailError, match="rejected the login") as caught:
        call(mailer.send_code, "dave@example.com", "135790", CodePurpose.REGISTER, 15)
    assert "wrong password" not in str(caught.value)
    assert server.messages == []


def test_untrusted_certificate_fails(mail_servers) -> None:
    """Without the test's trust root the self-signed certificate is refused."""
    server = mail_servers(starttls=True)
    mailer = SmtpMailer(smtp_config(server.port, starttls=True), reactor)

    with pytest.raises(MailError):
        call(mailer.send_code, "erin@example.com", "112233", CodePurpose.REGISTER, 15)
    assert server.messages == []


def test_starttls_required_but_not_offered(mail_servers) -> None:
    server = mail_servers()
    mailer = SmtpMailer(smtp_config(server.port, starttls=True), reactor)

    with pytest.raises(MailError, match="TLS"):
        call(mailer.send_code, "frank@example.com", "445566", CodePurpose.REGISTER, 15)
    assert server.messages == []


def test_server_requiring_auth_refuses_anonymous(mail_servers) -> None:
    server = mail_servers(credentials={USER: PASSWORD})
    mailer = SmtpMailer(smtp_config(server.port), reactor)

    with pytest.raises(MailError, match="530"):
        call(mailer.send_code, "gina@example.com", "778899", CodePurpose.REGISTER, 15)


def test_closed_port_fails() -> None:
    mailer = SmtpMailer(smtp_config(free_port()), reactor)

    with pytest.raises(MailError, match=r"127\.0\.0\.1:\d+"):
        call(mailer.send_code, "hank@example.com", "000111", CodePurpose.REGISTER, 15)


def test_silent_server_times_out() -> None:
    """A server that accepts the connection but never greets fails within the timeout."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel completes the handshake; nobody ever answers
        mailer = SmtpMailer(smtp_config(silent.getsockname()[1]), reactor, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(MailError):
            call(mailer.send_code, "ivy@example.com", "999000", CodePurpose.REGISTER, 15, timeout=5)
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("address", ["not-an-address", "x@example.com\r\nRCPT TO:<y@example.com>",
                                     "a b@example.com", "<z@example.com>"])
def test_unsafe_address_is_refused(mail_servers, address: str) -> None:
    server = mail_servers()
    mailer = SmtpMailer(smtp_config(server.port), reactor)

    with pytest.raises(MailError, match="not a deliverable"):
        call(mailer.send_code, address, "123123", CodePurpose.REGISTER, 15)
    with pytest.raises(MailError, match="not a deliverable"):
        call(LogMailer().send_code, address, "123123", CodePurpose.REGISTER, 15)


def test_log_mailer_logs_the_code() -> None:
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        mailer: Mailer = LogMailer()
        assert call(mailer.send_code, "alice@example.com", "123456", CodePurpose.RESET_PASSWORD, 15) is None
    finally:
        globalLogPublisher.removeObserver(events.append)

    matches = [m.groups() for e in events if (m := LOG_LINE.search(formatEvent(e)))]
    assert matches == [("alice@example.com", "RESET_PASSWORD", "123456")]


def test_make_mailer_chooses_by_host() -> None:
    assert isinstance(make_mailer(SmtpConfig(), reactor), LogMailer)
    assert isinstance(make_mailer(SmtpConfig(host="127.0.0.1", port=2525), reactor), SmtpMailer)
    with pytest.raises(ValueError, match="password"):
        SmtpMailer(SmtpConfig(host="127.0.0.1", username=USER), reactor)
