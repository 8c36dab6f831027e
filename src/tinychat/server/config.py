"""A node's settings, gathered from the command line into one typed object."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SmtpConfig:
    """Where verification mails go.  No host means dev mode: codes are logged."""

    host: str | None = None
    port: int = 25
    sender: str = "tinychat@localhost"
    username: str | None = None
    password: str | None = None
    starttls: bool = False


@dataclass
class Argon2Config:
    """argon2id cost parameters (RFC 9106 second recommendation by default)."""

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4


@dataclass
class NodeConfig:
    """Everything a node needs to start; see `twistd tinychat --help`."""

    listen: list[str] = field(default_factory=lambda: ["tcp:7420"])
    db: str = "sqlite:///tinychat.sqlite3"
    redis: str | None = None
    redis_prefix: str = "tinychat"
    presence_ttl: float = 10.0
    node_id: str = "node-1"
    public_address: str | None = None
    heartbeat_interval: float = 30.0
    idle_timeout: float = 90.0
    max_frame: int = 1024 * 1024
    file_chunk: int = 64 * 1024
    token_ttl: float = 30 * 86400.0
    metrics: str | None = None
    # Hostile-client limits (docs/security.md); 0 disables a limit.
    rate_limit: float = 200.0
    rate_burst: int = 400
    max_pending_requests: int = 32
    max_refusals: int = 1000
    refusal_window: float = 5.0
    max_connections_per_ip: int = 64
    flood_cooldown: float = 10.0
    handshake_timeout: float = 10.0
    login_timeout: float = 60.0
    max_outgoing_buffer: int = 4 * 1024 * 1024
    max_outgoing_total: int = 256 * 1024 * 1024
    slow_reader_timeout: float = 60.0
    # Group chat and files.
    max_group_members: int = 500
    max_upload_bytes: int = 100 * 1024 * 1024
    blob_dir: str = "blobs"
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    argon2: Argon2Config = field(default_factory=Argon2Config)
