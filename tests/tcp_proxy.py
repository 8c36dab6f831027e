"""A TCP proxy the test can cut and restore, to take a backing service away from a node."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.protocols import portforward

from tests.reactor_thread import call


class _Server(portforward.ProxyServer):
    def connectionMade(self) -> None:
        self.factory.live.add(self)
        super().connectionMade()

    def connectionLost(self, reason) -> None:
        self.factory.live.discard(self)
        super().connectionLost(reason)


class _Factory(portforward.ProxyFactory):
    protocol = _Server
    noisy = False

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.live: set[_Server] = set()


class CuttableProxy:
    """Forwards 127.0.0.1:port to (host, target_port) until `cut()`; `restore()` listens again."""

    def __init__(self, host: str, target_port: int) -> None:
        self.factory = _Factory(host, target_port)
        self.listener = call(reactor.listenTCP, 0, self.factory, interface="127.0.0.1")
        self.port = self.listener.getHost().port

    def cut(self) -> None:
        def cut_now():
            for server in list(self.factory.live):
                server.transport.abortConnection()
                if server.peer is not None:
                    server.peer.transport.abortConnection()
            return self.listener.stopListening()

        call(cut_now)

    def restore(self) -> None:
        self.listener = call(reactor.listenTCP, self.port, self.factory, interface="127.0.0.1")

    def close(self) -> None:
        self.cut()
