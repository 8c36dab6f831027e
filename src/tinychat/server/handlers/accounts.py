"""Accounts: verification codes, registration, login (password, token, TOTP), logout, reset."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import TYPE_CHECKING

import pyotp
from twisted.internet import defer
from twisted.python.failure import Failure

from tinychat.protocol import (
    CodePurpose,
    CodeSent,
    ErrorCode,
    KickedPush,
    KickReason,
    Login,
    LoginWithToken,
    Logout,
    Ok,
    Register,
    Registered,
    RequestCode,
    ResetPassword,
    TotpConfirm,
    TotpDisable,
    TotpSecret,
    TotpSetup,
    encode,
)
from tinychat.server.errors import refuse
from tinychat.server.store.sql import DuplicateError
from tinychat.server.verify import normalize_email

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from tinychat.server.connection import ChatConnection
    from tinychat.server.node import Services
    from tinychat.server.router import Router
    from tinychat.server.store.sql import SqlStore

USERNAME = re.compile(r"^[A-Za-z0-9_]{3,32}$")
MIN_PASSWORD = 8
TOTP_ISSUER = "TinyChat"


def token_digest(token: str) -> str:
    """Tokens are stored only as this hash."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise refuse(ErrorCode.WEAK_PASSWORD)


class TokenLookups:
    """Group lookup of resume tokens: tokens that arrive while lookups are in the database share the next one.

    A token login's database work is a few indexed reads, much less than what a
    round trip to the database thread costs the reactor (a thread wake-up, a
    GIL hand-over, a callFromThread); under a burst of logins (a node restarting,
    a network coming back) one round trip then serves many.  At most `parallel`
    lookups are in the database at once (one per connection of the store's pool);
    below that a token is looked up at once, so batching adds no wait when idle.
    """

    def __init__(self, store: SqlStore, clock: IReactorTime, parallel: int = 1, max_batch: int = 200) -> None:
        self.store = store
        self.clock = clock
        self.parallel = max(1, parallel)
        self.max_batch = max_batch
        self._queue: list[tuple[str, int, defer.Deferred]] = []
        self._in_flight = 0

    def lookup(self, token_hash: str) -> defer.Deferred:
        """Fires with `SqlStore.token_login`'s answer for the token (checked against the time of asking)."""
        d: defer.Deferred = defer.Deferred()
        self._queue.append((token_hash, int(self.clock.seconds() * 1000), d))
        if self._in_flight < self.parallel:
            self._flush()
        return d

    def _flush(self) -> None:
        batch = self._queue[:self.max_batch]
        del self._queue[:self.max_batch]
        self._in_flight += 1
        d = self.store.token_logins([(token_hash, now_ms) for token_hash, now_ms, _ in batch])
        d.addBoth(self._looked_up, batch)

    def _looked_up(self, result: list | Failure, batch: list[tuple[str, int, defer.Deferred]]) -> None:
        self._in_flight -= 1
        if self._queue:  # the next batch goes to the database before this one's logins go on
            self._flush()
        if isinstance(result, Failure):
            for _, _, d in batch:
                d.errback(result)
        else:
            for (_, _, d), found in zip(batch, result, strict=True):
                d.callback(found)


class Accounts:
    def __init__(self, services: Services) -> None:
        self.s = services
        self.token_lookups = TokenLookups(services.store, services.clock,
                                          parallel=getattr(services.store.pool, "max", 1))

    def install(self, router: Router) -> None:
        router.add(RequestCode, self.request_code)
        router.add(Register, self.register)
        router.add(Login, self.login)
        router.add(LoginWithToken, self.login_with_token)
        router.add(Logout, self.logout)
        router.add(ResetPassword, self.reset_password)
        router.add(TotpSetup, self.totp_setup)
        router.add(TotpConfirm, self.totp_confirm)
        router.add(TotpDisable, self.totp_disable)

    def _now_ms(self) -> int:
        return int(self.s.clock.seconds() * 1000)

    async def request_code(self, conn: ChatConnection, req: RequestCode) -> CodeSent:
        email = normalize_email(req.email)
        user = await self.s.store.get_user_by_email(email)
        if req.purpose is CodePurpose.REGISTER and user is not None:
            raise refuse(ErrorCode.EMAIL_TAKEN)
        if req.purpose is CodePurpose.RESET_PASSWORD and user is None:
            raise refuse(ErrorCode.USER_NOT_FOUND, "no account has this e-mail address")
        await self.s.codes.send(email, req.purpose)
        return CodeSent(request_id=req.request_id, expires_in_s=self.s.codes.ttl,
                        resend_after_s=self.s.codes.resend_interval)

    async def register(self, conn: ChatConnection, req: Register) -> Registered:
        if not USERNAME.match(req.username):
            raise refuse(ErrorCode.INVALID_USERNAME)
        email = normalize_email(req.email)
        check_password_rules(req.password)
        username_taken, email_taken = await self.s.store.taken(req.username, email)
        if username_taken:
            raise refuse(ErrorCode.USERNAME_TAKEN)
        if email_taken:
            raise refuse(ErrorCode.EMAIL_TAKEN)
        await self.s.codes.check(email, CodePurpose.REGISTER, req.code)
        password_hash = await self.s.passwords.hash(req.password)
        try:
            uid = await self.s.store.create_user(req.username, email, password_hash, self._now_ms())
        except DuplicateError as e:
            raise refuse(ErrorCode.USERNAME_TAKEN if e.field == "username" else ErrorCode.EMAIL_TAKEN)
        await self.s.codes.consume(email, CodePurpose.REGISTER)
        return Registered(request_id=req.request_id, uid=uid)

    def _check_rate(self, *keys: object) -> None:
        wait = self.s.limiter.retry_after(*keys)
        if wait > 0:
            raise refuse(ErrorCode.RATE_LIMITED, f"too many failed logins; try again in {wait:.0f} s",
                         retry_after_ms=int(wait * 1000) + 1)

    async def login(self, conn: ChatConnection, req: Login):
        conn.begin_login()
        try:
            peer_key = ("peer", conn.peer_host)
            name_key = ("account", req.identifier.strip().lower())
            self._check_rate(peer_key, name_key)
            user = await self.s.store.find_user(req.identifier)
            account_key = ("account", user.uid) if user else name_key
            self._check_rate(account_key)
            ok = await self.s.passwords.verify(user.password_hash if user else None, req.password)
            if not ok or user is None:
                self.s.limiter.failed(peer_key, account_key)
                raise refuse(ErrorCode.AUTH_FAILED)
            if user.totp_enabled:
                if not req.totp_code:
                    raise refuse(ErrorCode.TOTP_REQUIRED)
                if not pyotp.TOTP(user.totp_secret).verify(req.totp_code.strip(), valid_window=1):
                    self.s.limiter.failed(peer_key, account_key)
                    raise refuse(ErrorCode.TOTP_INVALID)
            self.s.limiter.reset(account_key)
            token = secrets.token_urlsafe(32)
            digest = token_digest(token)
            now = self._now_ms()
            expires = now + int(self.s.config.token_ttl * 1000)
            state = await self.s.store.add_token_and_state(digest, user.uid, now, expires)
            return await self.s.sessions.start(conn, user, token, digest, expires, req.request_id, state)
        finally:
            conn.end_login()

    async def login_with_token(self, conn: ChatConnection, req: LoginWithToken):
        conn.begin_login()
        try:
            peer_key = ("peer", conn.peer_host)
            self._check_rate(peer_key)
            digest = token_digest(req.token)
            found = await self.token_lookups.lookup(digest)
            if found is None:
                self.s.limiter.failed(peer_key)
                raise refuse(ErrorCode.TOKEN_INVALID)
            user, expires, friends, threads = found
            return await self.s.sessions.start(conn, user, req.token, digest, expires, req.request_id,
                                               (friends, threads))
        finally:
            conn.end_login()

    async def logout(self, conn: ChatConnection, req: Logout) -> Ok:
        session = conn.session
        if req.revoke_token and session is not None:
            await self.s.store.revoke_token(session.token_hash)
        await self.s.sessions.end(conn)
        return Ok(request_id=req.request_id)

    async def reset_password(self, conn: ChatConnection, req: ResetPassword) -> Ok:
        email = normalize_email(req.email)
        check_password_rules(req.new_password)
        await self.s.codes.check(email, CodePurpose.RESET_PASSWORD, req.code)
        user = await self.s.store.get_user_by_email(email)
        if user is None:
            raise refuse(ErrorCode.CODE_INVALID)
        password_hash = await self.s.passwords.hash(req.new_password)
        await self.s.store.reset_password(user.uid, password_hash)
        await self.s.codes.consume(email, CodePurpose.RESET_PASSWORD)
        keep = conn.session.session_id if conn.session and conn.session.uid == user.uid else None
        self.s.bus.publish([user.uid], encode(KickedPush(reason=KickReason.PASSWORD_RESET,
                                                         message="the password was reset")), skip_session=keep)
        return Ok(request_id=req.request_id)

    async def totp_setup(self, conn: ChatConnection, req: TotpSetup) -> TotpSecret:
        user = await self.s.store.get_user(conn.session.uid)
        if user.totp_enabled:
            raise refuse(ErrorCode.TOTP_STATE, "two-factor login is already on; disable it first")
        secret = pyotp.random_base32()
        await self.s.store.set_totp(user.uid, secret, False)
        uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=TOTP_ISSUER)
        return TotpSecret(request_id=req.request_id, secret=secret, uri=uri)

    async def _verified_totp_user(self, conn: ChatConnection, code: str, *, enabled: bool):
        uid = conn.session.uid
        key = ("totp", uid)
        self._check_rate(key)
        user = await self.s.store.get_user(uid)
        if user.totp_secret is None or user.totp_enabled != enabled:
            raise refuse(ErrorCode.TOTP_STATE)
        if not pyotp.TOTP(user.totp_secret).verify(code.strip(), valid_window=1):
            self.s.limiter.failed(key)
            raise refuse(ErrorCode.TOTP_INVALID)
        return user

    async def totp_confirm(self, conn: ChatConnection, req: TotpConfirm) -> Ok:
        user = await self._verified_totp_user(conn, req.code, enabled=False)
        await self.s.store.set_totp(user.uid, user.totp_secret, True)
        return Ok(request_id=req.request_id)

    async def totp_disable(self, conn: ChatConnection, req: TotpDisable) -> Ok:
        user = await self._verified_totp_user(conn, req.code, enabled=True)
        await self.s.store.set_totp(user.uid, None, False)
        return Ok(request_id=req.request_id)
