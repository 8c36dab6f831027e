"""Verification-code mails: logged in dev mode, sent over SMTP otherwise.

A node needs to deliver one short message (a registration or password-reset
code) to one address.  `make_mailer` picks the implementation from the node's
`SmtpConfig`: without an SMTP host the code is written to the node log so a
developer can read it there; with one, it is sent as a plain-text RFC 5322
mail through twisted.mail, failing within a bounded time with a `MailError`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import default as default_policy
from email.utils import format_datetime, make_msgid, parseaddr
from io import BytesIO
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IReactorTCP, IReactorTime
from twisted.internet.ssl import optionsForClientTLS
from twisted.logger import Logger
from twisted.mail.smtp import AUTHDeclinedError, ESMTPSenderFactory, SMTPClientError
from twisted.python.failure import Failure

from tinychat.protocol import CodePurpose
from tinychat.server.config import SmtpConfig

__all__ = [
    "DEFAULT_TIMEOUT",
    "IMailReactor",
    "LogMailer",
    "MailError",
    "Mailer",
    "SmtpMailer",
    "make_mailer",
]

DEFAULT_TIMEOUT = 30.0
"""Seconds a whole SMTP delivery may take before it fails (dead or slow server)."""

# Deliberately narrower than RFC 5321: plain ASCII, no whitespace, controls,
# quotes or brackets.  The address ends up in an SMTP command line, a header
# and a log line, so anything that could break out of those is refused here.
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+\Z")


class MailError(Exception):
    """A verification mail could not be delivered.  The message names no secret."""


class IMailReactor(IReactorTCP, IReactorTime):
    """What `SmtpMailer` needs of a reactor: TCP connections and a clock for timeouts."""


class Mailer(Protocol):
    """Sends verification codes; the node does not care whether by mail or to its log."""

    def send_code(self, email: str, code: str, purpose: CodePurpose, valid_minutes: int) -> Deferred[None]:
        """Deliver `code` to `email`; fires None once handed over, fails with `MailError`."""
        ...


def _check_address(address: str) -> str:
    """Return `address` if it is safe to put in SMTP commands, headers and logs."""
    if not _ADDRESS.match(address):
        raise ValueError(f"not a deliverable e-mail address: {address!r}")
    return address


class LogMailer:
    """Dev mode: the code goes to the node log instead of a mailbox.

    The line has a fixed shape, `verification code for <email> (<PURPOSE>): <code>`,
    so developers and integration tests can grep it from the log.
    """

    def __init__(self, log: Logger | None = None) -> None:
        self._log = log if log is not None else Logger(namespace=__name__)

    def send_code(self, email: str, code: str, purpose: CodePurpose, valid_minutes: int) -> Deferred[None]:
        try:
            _check_address(email)
        except ValueError as error:
            return fail(MailError(str(error)))
        self._log.info(
            "verification code for {email} ({purpose}): {code}",
            email=email,
            purpose=CodePurpose(purpose).name,
            code=code,
            valid_minutes=valid_minutes,
        )
        return succeed(None)


_SUBJECTS = {
    CodePurpose.REGISTER: "Your TinyChat verification code",
    CodePurpose.RESET_PASSWORD: "Your TinyChat password reset code",
}

_BODIES = {
    CodePurpose.REGISTER: (
        "Hello,\n\n"
        "use this code to confirm your e-mail address and finish creating\n"
        "your TinyChat account:\n\n"
        "    {code}\n\n"
        "The code is valid for {validity}.\n\n"
        "If you did not sign up for TinyChat, you can ignore this message;\n"
        "no account is created without the code.\n"
    ),
    CodePurpose.RESET_PASSWORD: (
        "Hello,\n\n"
        "use this code to reset the password of your TinyChat account:\n\n"
        "    {code}\n\n"
        "The code is valid for {validity}.\n\n"
        "If you did not ask to reset your password, you can ignore this\n"
        "message; your password stays unchanged.\n"
    ),
}


class SmtpMailer:
    """Sends codes through an SMTP server (optionally STARTTLS and AUTH).

    twisted.mail.smtp.sendmail is not used because it can neither take a TLS
    trust setting nor time out a server that accepts the connection and then
    stays silent; ESMTPSenderFactory with the same options can do both.

    `context_factory` is the client TLS setting used for STARTTLS.  By default
    the server certificate must be valid for `config.host` under the platform's
    trust roots; tests pass `optionsForClientTLS(host, trustRoot=...)` to accept
    their self-signed certificate.  `timeout` bounds the whole delivery
    (connecting, each server reply and the total), so a dead server fails the
    Deferred with `MailError` instead of leaving it pending.

    With `starttls` false no TLS is attempted even if the server offers it (a
    local relay with an unverifiable certificate would otherwise fail).
    """

    def __init__(
        self,
        config: SmtpConfig,
        reactor: IMailReactor,
        *,
        context_factory: IOpenSSLClientConnectionCreator | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not config.host:
            raise ValueError("SmtpMailer needs an SMTP host; use LogMailer for dev mode")
        if config.username and not config.password:
            raise ValueError("an SMTP user needs a password")
        self._config = config
        self._reactor = reactor
        self._timeout = timeout
        self._log = Logger(namespace=__name__)
        display_name, sender = parseaddr(config.sender)
        self._sender = _check_address(sender)
        self._sender_name = display_name or "TinyChat"
        if config.starttls and context_factory is None:
            context_factory = optionsForClientTLS(config.host)
        self._context_factory = context_factory if config.starttls else None
        if config.username and not config.starttls:
            self._log.warn(
                "SMTP AUTH for {user} to {host}:{port} without STARTTLS sends the password in clear",
                user=config.username,
                host=config.host,
                port=config.port,
            )

    def build_message(
        self, email: str, code: str, purpose: CodePurpose, valid_minutes: int
    ) -> EmailMessage:
        """The RFC 5322 message for one code (public so it can be inspected in tests)."""
        purpose = CodePurpose(purpose)
        validity = "1 minute" if valid_minutes == 1 else f"{valid_minutes} minutes"
        message = EmailMessage(policy=default_policy)
        message["Subject"] = _SUBJECTS[purpose]
        message["From"] = Address(display_name=self._sender_name, addr_spec=self._sender)
        message["To"] = Address(addr_spec=email)
        message["Date"] = format_datetime(datetime.fromtimestamp(self._reactor.seconds(), UTC))
        # An explicit domain: make_msgid would otherwise resolve our FQDN, blocking the reactor.
        message["Message-ID"] = make_msgid(domain=self._sender.rpartition("@")[2])
        # RFC 3834: keeps vacation responders from answering a machine.
        message["Auto-Submitted"] = "auto-generated"
        message.set_content(_BODIES[purpose].format(code=code, validity=validity))
        return message

    def send_code(self, email: str, code: str, purpose: CodePurpose, valid_minutes: int) -> Deferred[None]:
        try:
            _check_address(email)
        except ValueError as error:
            return fail(MailError(str(error)))
        try:
            data = self.build_message(email, code, purpose, valid_minutes).as_bytes()
        except (ValueError, TypeError, UnicodeError) as error:
            return fail(MailError(f"cannot build the verification mail for {email!r}: {error}"))
        return self._send(email, data, CodePurpose(purpose))

    def _send(self, email: str, data: bytes, purpose: CodePurpose) -> Deferred[None]:
        config = self._config
        host = config.host
        assert host is not None

        def cancel(_: Deferred[Any]) -> None:
            # Like twisted.mail.smtp.sendmail: stop retrying, drop the connection.
            factory.sendFinished = True
            protocol = factory.currentProtocol
            if protocol is not None and protocol.transport is not None:
                # The abort completes in a later reactor turn; its reply timer must not fire first.
                protocol.setTimeout(None)
                protocol.transport.abortConnection()
            else:
                connector.disconnect()

        result: Deferred[Any] = Deferred(cancel)
        factory = ESMTPSenderFactory(
            config.username.encode() if config.username else None,
            config.password.encode() if config.username and config.password else None,
            self._sender,
            [email],
            # twisted's sender turns "\n" into CRLF and dot-stuffs lines itself.
            BytesIO(data),
            result,
            retries=0,
            timeout=self._timeout,
            contextFactory=self._context_factory,
            heloFallback=True,
            requireAuthentication=bool(config.username),
            requireTransportSecurity=config.starttls,
        )
        connector = self._reactor.connectTCP(host, config.port, factory, timeout=self._timeout)
        result.addTimeout(self._timeout, self._reactor)

        def sent(_: object) -> None:
            self._log.info("sent {purpose} code mail to {email} via {host}:{port}",
                           purpose=purpose.name, email=email, host=host, port=config.port)

        return result.addCallbacks(sent, self._failed)

    def _failed(self, failure: Failure) -> None:
        """Turn any delivery failure into a MailError without credentials or session log."""
        where = f"{self._config.host}:{self._config.port}"
        error = failure.value
        if failure.check(defer.TimeoutError):
            message = f"SMTP server {where} did not complete the delivery within {self._timeout:g} s"
        elif isinstance(error, AUTHDeclinedError):
            message = f"SMTP server {where} rejected the login: {_reply(error)}"
        elif isinstance(error, SMTPClientError):
            # str(error) would append the SMTP session log (with AUTH lines in debug mode).
            message = f"sending mail via {where} failed ({type(error).__name__}): {_reply(error)}"
        else:
            message = f"sending mail via {where} failed: {type(error).__name__}: {error}"
        raise MailError(message) from None


def _reply(error: SMTPClientError) -> str:
    """The server's reply code and text of an SMTP error, without the session log."""
    resp = error.resp.decode("utf-8", "replace") if isinstance(error.resp, bytes) else str(error.resp)
    resp = " ".join(resp.split())
    return f"{error.code:03d} {resp}" if error.code > 0 else resp


def make_mailer(config: SmtpConfig, reactor: IMailReactor) -> Mailer:
    """SMTP when a host is configured, otherwise dev mode (codes in the log)."""
    if config.host:
        return SmtpMailer(config, reactor)
    return LogMailer()
