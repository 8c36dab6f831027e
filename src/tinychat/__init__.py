"""TinyChat: an instant-messaging server, client library and REPL built on Twisted."""

__version__ = "0.1.0"
