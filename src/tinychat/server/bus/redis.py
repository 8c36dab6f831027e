"""The cluster bus on Redis (txredisapi): per-user channels, presence and the node registry.

Routing: every user has a channel; a node subscribes to the channels of the
users whose sessions it holds and publishes a push to each recipient's
channel, so a push costs one PUBLISH whatever the number of nodes, with no
lookup of where the user is.  Recipients with a session on this node are
served directly, without Redis, which keeps local delivery going while Redis
is away.

Keys, under the prefix P:
  P:u:UID              channel of a user's pushes
  P:presence:UID       "NODE|SESSION" of the user's live session
  P:alive:NODE         present while NODE is alive (PX = presence TTL, refreshed by heartbeat)
  P:nodes              hash NODE -> "ADDRESS|CONNECTIONS"
  P:users:NODE         set of uids with a session on NODE (to clean up after a crash)
  P:lock:login:UID     a short lock that serialises logins of one user (owner token, TTL)
  P:lock:cleanup:NODE  taken by the one survivor that clears a dead node's sessions

A PUBLISH on P:u:UID carries the pushes one node had for that user in one
reactor turn: u8 length + id of the origin node, then for each push u8 length
+ id of the session not to deliver to (the sender's own) and the frame itself,
which its header delimits.

Two connections, as pub/sub requires: one subscribed, one for commands.  Both
are kept up by ClientService with jittered backoff; commands fail fast while
the link is down.  When the subscriber link comes back, the node re-registers
its sessions and tells them to resync, since pub/sub drops what is published
while a subscriber is away.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import txredisapi
from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from tinychat.protocol import KickedPush
from tinychat.server.bus.base import LocalDelivery, NodeInfo
from tinychat.server.errors import UnavailableError

log = Logger()

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""
_DETACH = """
local current = redis.call('get', KEYS[1])
if current == ARGV[1] then redis.call('del', KEYS[1]); redis.call('srem', KEYS[2], ARGV[2]); return 1 end
if current then return 0 end
return 1
"""
_KICKED = KickedPush.MSG_ID
_B = struct.Struct(">B")
_FRAME_LENGTH = struct.Struct(">I")  # a frame's body_len, after its u16 msg_id
_FRAME_HEADER_SIZE = 6


@dataclass(frozen=True)
class RedisUrl:
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    password: str | None = None


def parse_redis_url(url: str) -> RedisUrl:
    """redis://[:password@]host[:port][/db]"""
    parts = urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"unsupported Redis URL {url!r}: use redis://host:port/db")
    db = parts.path.lstrip("/")
    return RedisUrl(parts.hostname or "127.0.0.1", parts.port or 6379, int(db) if db else 0,
                    unquote(parts.password) if parts.password else None)


class _LinkFactory(Factory):
    """Builds txredisapi protocols for ClientService; never gives up reconnecting."""

    noisy = False
    isLazy = True

    def __init__(self, protocol: type, url: RedisUrl, bus: RedisBus | None = None) -> None:
        self._protocol = protocol
        self._url = url
        self.bus = bus

    def buildProtocol(self, addr: Any) -> txredisapi.BaseRedisProtocol:
        p = self._protocol(charset=None, password=self._url.password, dbid=self._url.db or None,
                           convertNumbers=False)
        p.factory = self
        return p

    def stopTrying(self) -> None:
        """txredisapi calls this after an AUTH/SELECT failure; we keep trying (and logging)."""

    def connectionError(self, why: str) -> None:
        log.error("redis: {why}", why=why)


class _Subscriber(txredisapi.SubscriberProtocol):
    def messageReceived(self, pattern: Any, channel: bytes, message: bytes) -> None:
        self.factory.bus._message(channel, message)


def _no_delay(transport: Any) -> None:
    """Small frames go out at once: Nagle's algorithm would hold them for the peer's delayed ACK."""
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        set_no_delay(True)


class _Link:
    """One Redis connection kept up by ClientService; `protocol` is None while it is down."""

    def __init__(self, reactor: Any, url: RedisUrl, factory: _LinkFactory,
                 on_ready: Callable[[Any], Any] | None = None, on_lost: Callable[[], Any] | None = None) -> None:
        self.protocol: Any = None
        self._on_ready = on_ready
        self._on_lost = on_lost
        endpoint = HostnameEndpoint(reactor, url.host, url.port, timeout=5)
        self.service = ClientService(endpoint, factory, retryPolicy=backoffPolicy(0.2, 5.0),
                                     clock=reactor, prepareConnection=self._prepare)

    def _prepare(self, protocol: Any) -> defer.Deferred:
        # Ready once AUTH/SELECT are through; ClientService waits for this.
        return protocol.whenConnected().addCallback(self._ready)

    def _ready(self, protocol: Any) -> None:
        self.protocol = protocol
        _no_delay(protocol.transport)
        protocol.whenDisconnected().addCallback(self._lost)
        if self._on_ready is not None:
            self._on_ready(protocol)

    def _lost(self, protocol: Any) -> None:
        if self.protocol is protocol:
            self.protocol = None
            if self._on_lost is not None:
                self._on_lost()

    def get(self) -> Any:
        protocol = self.protocol
        if protocol is None or not protocol.connected:
            raise UnavailableError("redis is not connected")
        return protocol


class RedisBus:
    """The Bus of a cluster node."""

    def __init__(self, url: str, node_id: str, reactor: Any, *, prefix: str = "tinychat",
                 presence_ttl: float = 10.0, address: Callable[[], str] = str,
                 connections: Callable[[], int] = int,
                 offline_friends: Callable[[int], Awaitable[Iterable[int]]] | None = None,
                 command_timeout: float = 3.0) -> None:
        self.url = parse_redis_url(url)
        self.node_id = node_id
        self.reactor = reactor
        self.prefix = prefix
        self.ttl_ms = int(presence_ttl * 1000)
        self.heartbeat_interval = presence_ttl / 3
        self._address = address
        self._connections = connections
        self._friends_of = offline_friends
        self.command_timeout = command_timeout
        self._deliver: LocalDelivery | None = None
        self._on_resync: Callable[[str], None] | None = None
        self._sessions: dict[int, set[str]] = {}
        self._outbox: dict[int, list[bytes]] = {}  # uid -> (skip, frame) entries to publish this turn
        self._flush_scheduled = False
        self._channel_prefix = f"{prefix}:u:".encode()
        self._origin = _B.pack(len(node_id.encode())) + node_id.encode()
        self._commands = _Link(reactor, self.url, _LinkFactory(txredisapi.RedisProtocol, self.url),
                               on_ready=self._commands_ready)
        self._subscriber = _Link(reactor, self.url, _LinkFactory(_Subscriber, self.url, self),
                                 on_ready=self._subscriber_ready, on_lost=self._subscriber_lost)
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = reactor
        self._was_connected = False
        self.publish_errors = 0
        self.published = 0
        self.received = 0
        self.on_publish: Callable[[int], None] | None = None
        self.on_receive: Callable[[int], None] | None = None

    # ------------------------------------------------------------ keys

    def _key(self, *parts: object) -> str:
        return ":".join((self.prefix, *map(str, parts)))

    def _channel(self, uid: int) -> bytes:
        return self._channel_prefix + str(uid).encode()

    # ------------------------------------------------------------ life cycle

    def start(self, deliver_local: LocalDelivery, on_resync: Callable[[str], None]) -> defer.Deferred:
        self._deliver = deliver_local
        self._on_resync = on_resync
        self._commands.service.startService()
        self._subscriber.service.startService()
        self._heartbeat.start(self.heartbeat_interval, now=False)
        return defer.succeed(None)

    async def _stop(self) -> None:
        if self._heartbeat.running:
            self._heartbeat.stop()
        try:
            redis = self._commands.get()
            users = self._key("users", self.node_id)
            for uid, sessions in list(self._sessions.items()):
                for session_id in sessions:
                    await redis.eval(_DETACH, [self._key("presence", uid), users],
                                     [f"{self.node_id}|{session_id}", uid])
            await redis.delete(self._key("alive", self.node_id))
            await redis.hdel(self._key("nodes"), self.node_id)
        except Exception as e:
            log.warn("redis: could not leave the registry cleanly: {error}", error=e)
        self._sessions.clear()
        await self._commands.service.stopService()
        await self._subscriber.service.stopService()

    def stop(self) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self._stop())

    def _commands_ready(self, protocol: Any) -> None:
        log.info("redis: command link up ({host}:{port})", host=self.url.host, port=self.url.port)
        defer.Deferred.fromCoroutine(self._register()).addErrback(
            lambda f: log.failure("redis: registering this node failed", f))

    def _subscriber_ready(self, protocol: Any) -> None:
        channels = [self._channel(uid) for uid in self._sessions]
        subscribed = protocol.subscribe(channels) if channels else defer.succeed(None)
        subscribed.addErrback(lambda f: log.failure("redis: resubscribe failed", f))
        if self._was_connected and self._on_resync is not None:
            # Pushes published while we were away are gone: once the subscriptions are back
            # (so nothing newer can slip through), the clients must catch up.
            def resync(_: object) -> None:
                log.warn("redis: subscriber link back; telling {n} users to resync", n=len(self._sessions))
                self._on_resync("the server's message bus reconnected")

            subscribed.addCallback(resync)
        self._was_connected = True

    def _subscriber_lost(self) -> None:
        log.warn("redis: subscriber link lost; local delivery goes on, cross-node pushes wait")

    async def _register(self) -> None:
        """(Re)announce this node and every local session: at start and after Redis comes back."""
        redis = self._commands.get()
        await self._beat_once(redis)
        users = self._key("users", self.node_id)
        for uid, sessions in list(self._sessions.items()):
            for session_id in sessions:
                await redis.set(self._key("presence", uid), f"{self.node_id}|{session_id}")
            await redis.sadd(users, uid)

    # ------------------------------------------------------------ heartbeat and dead nodes

    async def _beat_once(self, redis: Any) -> None:
        await redis.set(self._key("alive", self.node_id), "1", pexpire=self.ttl_ms)
        await redis.hset(self._key("nodes"), self.node_id, f"{self._address()}|{self._connections()}")

    def _beat(self) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self._beat_and_sweep()).addErrback(
            lambda f: log.debug("redis heartbeat skipped: {e}", e=f.value))

    async def _beat_and_sweep(self) -> None:
        redis = self._commands.get()
        await self._with_timeout(self._beat_once(redis))
        # The subscriber link sits idle between pushes: ping it so a dead one is noticed.
        subscriber = self._subscriber.protocol
        if subscriber is not None:
            try:
                await self._with_timeout(subscriber.ping())
            except Exception:
                subscriber.transport.abortConnection()
        registry = await self._with_timeout(redis.hgetall(self._key("nodes")))
        for raw_id in registry:
            node_id = raw_id.decode()
            if node_id != self.node_id and not await redis.exists(self._key("alive", node_id)):
                await self._sweep(redis, node_id)

    async def _sweep(self, redis: Any, node_id: str) -> None:
        """A node's alive key expired: clear its sessions from presence and tell their friends."""
        token = secrets.token_hex(8)
        lock = self._key("lock", "cleanup", node_id)
        if not await redis.set(lock, token, pexpire=self.ttl_ms, only_if_not_exists=True):
            return  # another survivor is on it
        try:
            users_key = self._key("users", node_id)
            offline = []
            for raw_uid in await redis.smembers(users_key):
                uid = int(raw_uid)
                key = self._key("presence", uid)
                current = await redis.get(key)
                if current is not None and current.decode().split("|")[0] == node_id:
                    await redis.delete(key)
                    offline.append(uid)
            await redis.delete(users_key)
            await redis.hdel(self._key("nodes"), node_id)
            log.warn("redis: node {node} is gone; {n} of its users are now offline", node=node_id, n=len(offline))
            if self._friends_of is not None:
                from tinychat.protocol import PresencePush, encode

                for uid in offline:
                    friends = await self._friends_of(uid)
                    self.publish(friends, encode(PresencePush(uid=uid, online=False)))
        finally:
            await redis.eval(_RELEASE, [lock], [token])

    def _with_timeout(self, awaitable: Any) -> defer.Deferred:
        d = awaitable if isinstance(awaitable, defer.Deferred) else defer.ensureDeferred(awaitable)
        return d.addTimeout(self.command_timeout, self.reactor)

    # ------------------------------------------------------------ sessions

    def lock_login(self, uid: int) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self._lock_login(uid))

    async def _lock_login(self, uid: int) -> Callable[[], None]:
        """Take P:lock:login:UID (owner token, 5 s TTL); while Redis is down, go on unlocked."""
        key = self._key("lock", "login", uid)
        token = secrets.token_hex(8)
        for attempt in range(50):
            try:
                redis = self._commands.get()
                if await self._with_timeout(redis.set(key, token, pexpire=5000, only_if_not_exists=True)):
                    break
            except Exception as e:
                log.warn("redis: login lock unavailable ({error}); going on without it", error=e)
                return lambda: None
            d: defer.Deferred = defer.Deferred()
            self.reactor.callLater(0.02 * (attempt + 1), d.callback, None)
            await d
        else:
            log.warn("redis: login lock for {uid} still held after retries; going on", uid=uid)
            return lambda: None

        def release() -> None:
            try:
                self._commands.get().eval(_RELEASE, [key], [token]).addErrback(lambda f: None)
            except UnavailableError:
                pass  # the TTL frees it

        return release

    def attach(self, uid: int, session_id: str) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self._attach(uid, session_id))

    async def _attach(self, uid: int, session_id: str) -> None:
        first_here = uid not in self._sessions
        self._sessions.setdefault(uid, set()).add(session_id)
        try:
            if first_here and self._subscriber.protocol is not None:
                await self._with_timeout(self._subscriber.protocol.subscribe([self._channel(uid)]))
            redis = self._commands.get()
            await self._with_timeout(redis.set(self._key("presence", uid), f"{self.node_id}|{session_id}"))
            await self._with_timeout(redis.sadd(self._key("users", self.node_id), uid))
        except Exception as e:
            # Registered locally; _register() announces it when Redis is back.
            log.warn("redis: attach of {uid} deferred until redis is back: {error}", uid=uid, error=e)

    def detach(self, uid: int, session_id: str) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self._detach(uid, session_id))

    async def _detach(self, uid: int, session_id: str) -> bool:
        sessions = self._sessions.get(uid)
        if sessions is not None:
            sessions.discard(session_id)
            if not sessions:
                del self._sessions[uid]
                if self._subscriber.protocol is not None:
                    self._subscriber.protocol.unsubscribe([self._channel(uid)]).addErrback(lambda f: None)
        try:
            redis = self._commands.get()
            gone = await self._with_timeout(redis.eval(
                _DETACH, [self._key("presence", uid), self._key("users", self.node_id)],
                [f"{self.node_id}|{session_id}", uid]))
            return bool(gone) and uid not in self._sessions
        except Exception:
            return uid not in self._sessions

    # ------------------------------------------------------------ delivery

    def publish(self, uids: Iterable[int], frame: bytes, skip_session: str | None = None) -> None:
        """Deliver to local sessions now; queue the frame for the other recipients' channels.

        Everything queued for one channel in one reactor turn goes out as one
        PUBLISH: a batch commit pushes many messages at once, often several to
        the same user, and each PUBLISH costs both nodes far more than a frame.
        """
        deliver = self._deliver
        local = self._sessions
        everywhere = frame[0] << 8 | frame[1] == _KICKED
        entry = None
        outbox = self._outbox
        for uid in uids:
            if uid in local:
                deliver(uid, frame, skip_session)
                if not everywhere:
                    continue
            if entry is None:
                skip = (skip_session or "").encode()
                entry = _B.pack(len(skip)) + skip + frame
            queued = outbox.get(uid)
            if queued is None:
                outbox[uid] = [entry]
            else:
                queued.append(entry)
        if entry is not None and not self._flush_scheduled:
            self._flush_scheduled = True
            self.reactor.callLater(0, self._flush_outbox)
        if self.on_publish is not None:
            self.on_publish(len(frame))

    def _flush_outbox(self) -> None:
        """One PUBLISH per channel of what this turn queued: origin, then (skip, frame) entries."""
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, {}
        redis = self._commands.protocol
        if redis is None or not redis.connected:
            self.publish_errors += sum(map(len, outbox.values()))
            return
        origin = self._origin
        for uid, entries in outbox.items():
            self.published += len(entries)
            redis.publish(self._channel(uid), origin + b"".join(entries)).addErrback(self._publish_failed)

    def _publish_failed(self, failure: Any) -> None:
        self.publish_errors += 1

    def _message(self, channel: bytes, envelope: bytes) -> None:
        """Pushes from the subscriber link: unwrap them and hand them to local sessions in order."""
        if not channel.startswith(self._channel_prefix) or self._deliver is None:
            return
        uid = int(channel[len(self._channel_prefix):])
        origin_len = envelope[0]
        if envelope[1:1 + origin_len] == self._origin[1:] and uid in self._sessions:
            return  # published by this node, which delivered it locally already
        deliver = self._deliver
        at, end = 1 + origin_len, len(envelope)
        while at < end:
            skip_len = envelope[at]
            skip = envelope[at + 1:at + 1 + skip_len].decode() or None
            at += 1 + skip_len
            stop = at + _FRAME_HEADER_SIZE + _FRAME_LENGTH.unpack_from(envelope, at + 2)[0]
            self.received += 1
            if self.on_receive is not None:
                self.on_receive(stop - at)
            deliver(uid, envelope[at:stop], skip)
            at = stop

    # ------------------------------------------------------------ queries

    def online(self, uids: Collection[int]) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self._online(list(uids)))

    async def _online(self, uids: list[int]) -> set[int]:
        if not uids:
            return set()
        try:
            redis = self._commands.get()
            values = await self._with_timeout(redis.mget([self._key("presence", uid) for uid in uids]))
            nodes = {v.decode().split("|")[0] for v in values if v is not None}
            node_list = sorted(nodes)
            alive_values = await self._with_timeout(redis.mget([self._key("alive", n) for n in node_list])) \
                if node_list else []
            alive = {n for n, v in zip(node_list, alive_values, strict=True) if v is not None}
            return {uid for uid, v in zip(uids, values, strict=True)
                    if v is not None and v.decode().split("|")[0] in alive}
        except Exception:
            return {uid for uid in uids if uid in self._sessions}

    def nodes(self) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self._nodes())

    async def _nodes(self) -> list[NodeInfo]:
        try:
            redis = self._commands.get()
            registry = await self._with_timeout(redis.hgetall(self._key("nodes")))
            ids = sorted(k.decode() for k in registry)
            alive = await self._with_timeout(redis.mget([self._key("alive", n) for n in ids])) if ids else []
            result = []
            for node_id, flag in zip(ids, alive, strict=True):
                if flag is None:
                    continue
                address, _, connections = registry[node_id.encode()].decode().rpartition("|")
                result.append(NodeInfo(node_id, address, int(connections or 0)))
            return result
        except Exception:
            return [NodeInfo(self.node_id, self._address(), self._connections())]
