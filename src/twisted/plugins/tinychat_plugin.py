"""twistd plugin: `twistd -n tinychat [options]` runs a TinyChat node.

The plugin only names the module; twistd imports it when the `tinychat`
subcommand is used, so listing plugins stays cheap.
"""

from twisted.application.service import ServiceMaker

tinychat = ServiceMaker(
    "TinyChat",
    "tinychat.server.tap",
    "A TinyChat instant-messaging node (embedded SQLite by default, or a cluster member).",
    "tinychat",
)
