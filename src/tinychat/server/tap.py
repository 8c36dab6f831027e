"""`twistd tinychat`: command-line options and the service they make."""

from __future__ import annotations

import socket

from twisted.application.service import IService
from twisted.python import usage

from tinychat.server.config import Argon2Config, NodeConfig, SmtpConfig


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError("must be positive")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("must be positive")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ValueError("must be 0 (off) or positive")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must be 0 (off) or positive")
    return number


class Options(usage.Options):
    """Options of a TinyChat node.  Endpoint strings follow Twisted's syntax."""

    synopsis = "[options]"
    longdesc = (
        "Runs a TinyChat node. With no options it listens on tcp:7420 and keeps everything "
        "in ./tinychat.sqlite3 (embedded mode). A cluster of nodes shares --db mysql://... "
        "and --redis redis://..."
    )

    optFlags = [
        ["smtp-starttls", None, "Require STARTTLS on the SMTP connection."],
    ]
    optParameters = [
        ["db", None, "sqlite:///tinychat.sqlite3",
         "Database URL: sqlite:///path or mysql://user:password@host:port/database."],
        ["redis", None, None,
         "Redis URL (redis://host:port/db) shared by the nodes of a cluster. Without it the node "
         "routes messages in-process (embedded mode)."],
        ["redis-prefix", None, "tinychat", "Prefix of every Redis key and channel of this cluster."],
        ["presence-ttl", None, 10.0,
         "Seconds after which a node that stopped heart-beating (and its users) drops out of the "
         "cluster registry and presence.", _positive_float],
        ["node-id", None, socket.gethostname(), "This node's id, unique in the cluster."],
        ["public-address", None, None,
         "Client endpoint string other clients use to reach this node, e.g. "
         "tcp:host=chat1.example.com:port=7420 (default: derived from the first --listen)."],
        ["heartbeat-interval", None, 30.0, "Seconds between client heartbeats, announced in WELCOME.",
         _positive_float],
        ["idle-timeout", None, 90.0, "Seconds of silence after which a connection is closed.",
         _positive_float],
        ["max-frame", None, 1024 * 1024, "Largest frame body accepted, in bytes.", _positive_int],
        ["token-ttl", None, 30 * 86400.0, "Lifetime of resume tokens, in seconds.", _positive_float],
        ["metrics", None, None, "Endpoint string for a Prometheus metrics HTTP listener, e.g. tcp:9420."],
        ["rate-limit", None, 200.0,
         "Requests per second one connection may make (token bucket); excess requests are refused "
         "with RATE_LIMITED. 0: no limit.", _non_negative_float],
        ["rate-burst", None, 400, "Requests one connection may make at once above --rate-limit.",
         _positive_int],
        ["max-pending-requests", None, 32,
         "Requests of one connection worked on at once (database, password checks); later ones wait their "
         "turn, unread, so one client cannot queue work ahead of everyone else's. 0: no limit.",
         _non_negative_int],
        ["max-refusals", None, 1000,
         "RATE_LIMITED refusals within --refusal-window after which the connection is closed "
         "(LIMIT_EXCEEDED); the count drains at max-refusals/refusal-window per second, as fast as a client "
         "that waits retry_after_ms can be refused. 0: never close.", _non_negative_int],
        ["refusal-window", None, 5.0, "Seconds over which --max-refusals is counted.", _positive_float],
        ["max-connections-per-ip", None, 64,
         "Simultaneous connections from one peer address; more are refused with LIMIT_EXCEEDED. 0: no limit.",
         _non_negative_int],
        ["flood-cooldown", None, 10.0,
         "Seconds during which an address whose connection was closed for flooding (LIMIT_EXCEEDED) may not "
         "connect again. 0: none.", _non_negative_float],
        ["handshake-timeout", None, 10.0,
         "Seconds a new connection has to complete HELLO, however much it trickles. 0: no deadline.",
         _non_negative_float],
        ["login-timeout", None, 60.0,
         "Seconds after the handshake (or a logout) to log in before the connection is closed. 0: no deadline.",
         _non_negative_float],
        ["max-outgoing-buffer", None, 4 * 1024 * 1024,
         "Bytes that may queue for a client that does not read before its connection is aborted. 0: no limit.",
         _non_negative_int],
        ["max-outgoing-total", None, 256 * 1024 * 1024,
         "Bytes that may queue for all the clients that do not read, together; past it, the connection "
         "adding to the queue is aborted. 0: no limit.", _non_negative_int],
        ["slow-reader-timeout", None, 60.0,
         "Seconds a client may leave data waiting (its socket full, reading nothing) before its connection "
         "is aborted. 0: no limit.", _non_negative_float],
        ["max-group-members", None, 500, "Members one group may have.", _positive_int],
        ["max-upload-bytes", None, 100 * 1024 * 1024, "Largest file a client may upload, in bytes.",
         _positive_int],
        ["blob-dir", None, "blobs", "Directory for uploaded files of an embedded node."],
        ["smtp-host", None, None,
         "SMTP server for verification mails. Without it codes are written to the log (dev mode)."],
        ["smtp-port", None, 25, "SMTP port.", _positive_int],
        ["smtp-sender", None, "tinychat@localhost", "From address of verification mails."],
        ["smtp-user", None, None, "SMTP login user (AUTH)."],
        ["smtp-password", None, None, "SMTP login password."],
        ["argon2-time-cost", None, 3, "argon2id iterations.", _positive_int],
        ["argon2-memory-kib", None, 65536, "argon2id memory, KiB.", _positive_int],
        ["argon2-parallelism", None, 4, "argon2id lanes.", _positive_int],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """Endpoint string to accept clients on (repeatable; default tcp:7420), e.g.
        tcp:7420:interface=127.0.0.1 or ssl:7421:privateKey=key.pem:certKey=cert.pem."""
        self["listen"].append(description)

    opt_l = opt_listen

    def postOptions(self) -> None:
        if not self["listen"]:
            self["listen"] = ["tcp:7420"]
        if self["idle-timeout"] < self["heartbeat-interval"]:
            raise usage.UsageError("--idle-timeout must be at least --heartbeat-interval")

    def to_config(self) -> NodeConfig:
        return NodeConfig(
            listen=list(self["listen"]),
            db=self["db"],
            redis=self["redis"],
            redis_prefix=self["redis-prefix"],
            presence_ttl=self["presence-ttl"],
            node_id=self["node-id"],
            public_address=self["public-address"],
            heartbeat_interval=self["heartbeat-interval"],
            idle_timeout=self["idle-timeout"],
            max_frame=self["max-frame"],
            token_ttl=self["token-ttl"],
            metrics=self["metrics"],
            rate_limit=self["rate-limit"],
            rate_burst=self["rate-burst"],
            max_pending_requests=self["max-pending-requests"],
            max_refusals=self["max-refusals"],
            refusal_window=self["refusal-window"],
            max_connections_per_ip=self["max-connections-per-ip"],
            flood_cooldown=self["flood-cooldown"],
            handshake_timeout=self["handshake-timeout"],
            login_timeout=self["login-timeout"],
            max_outgoing_buffer=self["max-outgoing-buffer"],
            max_outgoing_total=self["max-outgoing-total"],
            slow_reader_timeout=self["slow-reader-timeout"],
            max_group_members=self["max-group-members"],
            max_upload_bytes=self["max-upload-bytes"],
            blob_dir=self["blob-dir"],
            smtp=SmtpConfig(
                host=self["smtp-host"], port=self["smtp-port"], sender=self["smtp-sender"],
                username=self["smtp-user"], password=self["smtp-password"],
                starttls=bool(self["smtp-starttls"]),
            ),
            argon2=Argon2Config(
                time_cost=self["argon2-time-cost"], memory_kib=self["argon2-memory-kib"],
                parallelism=self["argon2-parallelism"],
            ),
        )


def makeService(options: Options) -> IService:
    """Build the node's service tree from parsed options."""
    from tinychat.server.service import build_node_service

    return build_node_service(options.to_config())
