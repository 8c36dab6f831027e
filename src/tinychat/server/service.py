"""Assemble a node's service tree: store, bus, handlers, listeners."""

from __future__ import annotations

from twisted.application import service, strports
from twisted.internet import defer
from twisted.logger import Logger

from tinychat.server.bus.local import LocalBus
from tinychat.server.config import NodeConfig
from tinychat.server.connection import ChatFactory
from tinychat.server.mail import make_mailer
from tinychat.server.metrics import Metrics, metrics_site
from tinychat.server.node import Node, Services
from tinychat.server.passwords import Passwords
from tinychat.server.ratelimit import FailureLimiter
from tinychat.server.sessions import Sessions
from tinychat.server.store.sql import SqlStore
from tinychat.server.verify import VerificationCodes
from tinychat.server.writer import MessageWriter

log = Logger()


def _is_tls(description: str) -> bool:
    """Whether a server endpoint description listens with TLS (`ssl:...`)."""
    return description.split(":", 1)[0].strip().lower() == "ssl"


def _describe(port: object, description: str = "") -> str:
    """`tcp:127.0.0.1:7420` (or `ssl:...` for a TLS listener) for a listening port, or its repr."""
    address = port.getHost()
    host = getattr(address, "host", None)
    if host is None:
        return str(address)
    scheme = "ssl" if _is_tls(description) else address.type.lower()
    return f"{scheme}:{host}:{address.port}"


def _client_endpoint(port: object, description: str) -> str:
    """The client endpoint string reaching a listener: `tls:` for TLS ones, colons in hosts escaped."""
    address = port.getHost()
    host = address.host.replace(":", "\\:")
    return f"{'tls' if _is_tls(description) else 'tcp'}:host={host}:port={address.port}"


class NodeService(service.MultiService):
    """Starts the node's parts, then the listeners (a bind failure aborts twistd)."""

    def __init__(self, node: Node) -> None:
        super().__init__()
        self.node = node
        self.listeners: list[service.Service] = []
        factory = ChatFactory(node)
        for description in node.config.listen:
            listener = strports.service(description, factory)
            listener.setServiceParent(self)
            self.listeners.append(listener)
        self.metrics_listener = None
        if node.config.metrics and node.services is not None:
            self.metrics_listener = strports.service(node.config.metrics, metrics_site(node.services.metrics))
            self.metrics_listener.setServiceParent(self)

    def startService(self) -> None:
        services = self.node.services
        if services is not None:
            services.passwords.start()
            services.bus.start(services.sessions.deliver_local, services.sessions.resync_all)
        super().startService()
        waiting = [listener._waitingForPort for listener in self.listeners]
        defer.gatherResults(waiting, consumeErrors=True).addCallback(self._ready)

    def _ready(self, ports: list) -> None:
        descriptions = self.node.config.listen
        addresses = [_describe(port, description) for port, description in zip(ports, descriptions, strict=True)]
        if not self.node.public_address and ports:
            self.node.public_address = _client_endpoint(ports[0], descriptions[0])
        if self.metrics_listener is not None:
            self.metrics_listener._waitingForPort.addCallback(
                lambda port: log.info("metrics on http {address}/metrics", address=_describe(port)))
        log.info("tinychat node {node_id} ready: listening on {addresses}",
                 node_id=self.node.config.node_id, addresses=" ".join(addresses))

    async def _stop(self) -> None:
        self.node.shutdown()
        await super().stopService()
        services = self.node.services
        if services is not None:
            await services.bus.stop()
            services.sessions.audit.flush()
            services.passwords.stop()
            services.store.close()

    def stopService(self) -> defer.Deferred:
        return defer.Deferred.fromCoroutine(self._stop())


def make_blob_store(config: NodeConfig, store: SqlStore):
    """Files in a directory for an embedded node; in the shared database for MySQL (every node reads it)."""
    from tinychat.server.store.blobs import FileBlobStore, SqlBlobStore

    if store.url.kind == "mysql":
        return SqlBlobStore(store)
    return FileBlobStore(config.blob_dir)


def build_node(config: NodeConfig, reactor) -> Node:
    """Open the store (migrating it now, before the reactor runs) and assemble the node."""
    store = SqlStore(config.db)
    version = store.migrate()
    log.info("database {db} at schema version {version}", db=store.url.redacted(), version=version)
    built: list[Node] = []  # the bus reports the node's address and load once the node exists

    def address() -> str:
        return built[0].public_address if built else ""

    def connections() -> int:
        return len(built[0].connections) if built else 0

    async def friends_of(uid: int) -> list[int]:
        return await sessions.friends_of(uid)

    if config.redis:
        from tinychat.server.bus.redis import RedisBus

        bus = RedisBus(config.redis, config.node_id, reactor, prefix=config.redis_prefix,
                       presence_ttl=config.presence_ttl, address=address, connections=connections,
                       offline_friends=friends_of)
    else:
        bus = LocalBus(config.node_id, address, connections)
    metrics = Metrics()
    sessions = Sessions(store, bus, reactor, metrics)
    writer = MessageWriter(lambda batch: store.append_messages(batch, int(reactor.seconds() * 1000)),
                           on_batch=metrics.observe_batch, clock=reactor)
    mailer = make_mailer(config.smtp, reactor)
    if config.smtp.host is None:
        log.warn("no --smtp-host: verification codes are written to this log (dev mode)")
    services = Services(
        config=config, clock=reactor, store=store, bus=bus, passwords=Passwords(config.argon2, reactor),
        codes=VerificationCodes(store, mailer, reactor), sessions=sessions, writer=writer,
        limiter=FailureLimiter(reactor), metrics=metrics, blobs=make_blob_store(config, store),
    )
    node = Node(config, reactor, services)
    metrics.watch(node)
    built.append(node)
    return node


def build_node_service(config: NodeConfig) -> NodeService:
    """The whole node, ready to be started by twistd."""
    from twisted.internet import reactor

    return NodeService(build_node(config, reactor))
