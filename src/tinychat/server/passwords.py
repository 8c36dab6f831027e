"""argon2id password hashing on a dedicated thread pool, never on the reactor thread."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from tinychat.server.config import Argon2Config


class Passwords:
    """Hash and verify passwords off the reactor; parameters come from the node's options."""

    def __init__(self, config: Argon2Config, reactor, threads: int = 2) -> None:
        self.hasher = PasswordHasher(time_cost=config.time_cost, memory_cost=config.memory_kib,
                                     parallelism=config.parallelism)
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=threads, name="argon2")
        # A hash to verify against when the user does not exist, so that unknown
        # users and wrong passwords take the same time.
        self._dummy = self.hasher.hash("tinychat-no-such-user")

    def start(self) -> None:
        self._pool.start()

    def stop(self) -> None:
        self._pool.stop()

    def hash(self, password: str) -> defer.Deferred:
        return deferToThreadPool(self._reactor, self._pool, self.hasher.hash, password)

    def verify(self, password_hash: str | None, password: str) -> defer.Deferred:
        """Fires with True/False; a None hash is checked against a dummy (and is False)."""

        def check() -> bool:
            try:
                ok = self.hasher.verify(password_hash or self._dummy, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False
            return ok and password_hash is not None

        return deferToThreadPool(self._reactor, self._pool, check)
