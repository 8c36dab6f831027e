"""E-mail verification codes: 6 digits from pyotp, kept hashed with an expiry and a try limit."""

from __future__ import annotations

import hashlib
import hmac
import re

import pyotp
from twisted.internet.interfaces import IReactorTime

from tinychat.protocol import CodePurpose, ErrorCode
from tinychat.server.errors import UnavailableError, refuse
from tinychat.server.mail import Mailer
from tinychat.server.store.records import CodeRow
from tinychat.server.store.sql import SqlStore

EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def normalize_email(email: str) -> str:
    """Lower-cased and stripped; refuses what is not local@domain.tld."""
    email = email.strip().lower()
    if len(email) > 254 or not EMAIL.match(email):
        raise refuse(ErrorCode.INVALID_EMAIL)
    return email


def _digest(email: str, purpose: int, code: str) -> str:
    return hashlib.sha256(f"{email}\0{purpose}\0{code}".encode()).hexdigest()


class VerificationCodes:
    """Issues, mails and checks codes: valid `ttl` s, `max_attempts` tries, one per `resend_interval` s."""

    def __init__(self, store: SqlStore, mailer: Mailer, clock: IReactorTime, ttl: int = 300,
                 max_attempts: int = 5, resend_interval: int = 60) -> None:
        self.store = store
        self.mailer = mailer
        self.clock = clock
        self.ttl = ttl
        self.max_attempts = max_attempts
        self.resend_interval = resend_interval

    def _now_ms(self) -> int:
        return int(self.clock.seconds() * 1000)

    async def send(self, email: str, purpose: CodePurpose) -> None:
        """Mail a new code, unless one was sent less than `resend_interval` ago."""
        now = self._now_ms()
        existing = await self.store.get_code(email, purpose)
        if existing is not None:
            wait_ms = existing.sent_at_ms + self.resend_interval * 1000 - now
            if wait_ms > 0:
                raise refuse(ErrorCode.RATE_LIMITED, f"a code was sent recently; ask again in "
                             f"{(wait_ms + 999) // 1000} s", retry_after_ms=wait_ms)
        # A fresh random secret makes the one-time code itself uniformly random.
        code = pyotp.HOTP(pyotp.random_base32(), digits=6).at(0)
        await self.store.put_code(CodeRow(email, int(purpose), _digest(email, purpose, code), 0, now,
                                          now + self.ttl * 1000))
        try:
            await self.mailer.send_code(email, code, purpose, self.ttl // 60)
        except Exception as e:
            await self.store.delete_code(email, purpose)
            raise UnavailableError(f"the e-mail could not be sent: {e}") from None

    async def check(self, email: str, purpose: CodePurpose, code: str) -> None:
        """Refuse with CODE_INVALID unless `code` is the live code; a wrong one uses up a try."""
        row = await self.store.get_code(email, purpose)
        if row is None or row.expires_at_ms <= self._now_ms() or row.attempts >= self.max_attempts:
            raise refuse(ErrorCode.CODE_INVALID, "no valid code for this address: ask for a new one")
        if not hmac.compare_digest(_digest(email, purpose, code.strip()), row.code_hash):
            await self.store.count_code_attempt(email, purpose)
            left = self.max_attempts - row.attempts - 1
            raise refuse(ErrorCode.CODE_INVALID, f"wrong code ({left} tries left)")

    async def consume(self, email: str, purpose: CodePurpose) -> None:
        """A used code cannot be used again."""
        await self.store.delete_code(email, purpose)
