"""An echo bot: accepts every friend request and sends every message back.

    python examples/echo_bot.py --server tcp:host=127.0.0.1:port=7420 \\
        --user echo --password 'correct horse battery'

Give --server several times to name the nodes to cycle through when a node
goes away.  Runs until interrupted (Ctrl-C or SIGTERM, exit status 0); exits
with status 1 when the session ends for good (logged in elsewhere, password
reset, or the resume token refused).

What it shows of the client library:

- event handlers (`on_friend_request`, `on_message`, `on_state`), which may be
  coroutines;
- `replay_unread=True`: at start the bot is handed the messages that arrived
  while it was down (after its read mark) and the friend requests still
  pending, so nothing is missed across restarts;
- automatic reconnection and resync: the bot sees each message once, in
  order, however often the connection drops;
- safe retries: the echo's client_msg_id is derived from the message it
  answers, so resending it after a dropped connection, or after a restart
  before the read mark moved, stores it only once.
"""

from __future__ import annotations

import argparse
import hashlib
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", action="append", required=True,
                   help="Twisted client endpoint string of a node (repeatable)")
    p.add_argument("--user", required=True, help="the bot's username, e-mail address or uid")
    p.add_argument("--password", required=True)
    return p.parse_args(argv)


def echo_id(thread_id: int, seq: int) -> int:
    """The idempotency key of the echo of (thread_id, seq): the same on every retry and restart."""
    digest = hashlib.sha256(f"echo:{thread_id}:{seq}".encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


async def run(reactor: Any, args: argparse.Namespace) -> None:
    from twisted.internet import defer

    from tinychat.client import ConnectionState, TinyChatClient
    from tinychat.client.errors import ConnectionClosedError, RequestTimeoutError
    from tinychat.protocol import ChatMessage, FriendRequestInfo

    client = TinyChatClient(args.server, reactor=reactor, client_name="echo-bot", replay_unread=True)
    finished: defer.Deferred = defer.Deferred()
    stopping = False

    async def retrying(action: Any) -> Any:
        """Run a request; if the connection drops first, run it again once logged in.

        None when the client is down for good (shutting down, or the session is over).
        """
        while True:
            try:
                return await action()
            except (ConnectionClosedError, RequestTimeoutError):
                if client.state is ConnectionState.DISCONNECTED:
                    return None
                await client.when_state(ConnectionState.LOGGED_IN)

    @client.on_friend_request
    async def accept(request: FriendRequestInfo) -> None:
        resolved = await retrying(lambda: client.accept_friend(request.friend_request_id))
        if resolved is None:
            return
        print(f"accepted {request.from_username} (uid {request.from_uid}), thread {resolved.thread_id}", flush=True)

    @client.on_message
    async def echo(message: ChatMessage) -> None:
        if client.user is None or message.sender_uid == client.user.uid:
            return  # the bot's own words, sent from another session
        key = echo_id(message.thread_id, message.seq)
        ack = await retrying(lambda: client.send_text(message.text, thread_id=message.thread_id, client_msg_id=key))
        if ack is None:
            return  # not marked read: echoed (once, thanks to the key) at the next start
        await retrying(lambda: client.mark_read(message.thread_id, message.seq))
        print(f"echoed thread {message.thread_id} seq {message.seq} as seq {ack.seq}", flush=True)

    @client.on_state
    def state(old: ConnectionState, new: ConnectionState) -> None:
        print(f"state {old} -> {new}", flush=True)
        if new is ConnectionState.DISCONNECTED and not stopping and not finished.called:
            finished.errback(SystemExit(1))  # the session is over for good

    def shutdown() -> defer.Deferred:
        nonlocal stopping
        stopping = True
        return client.close()

    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    await client.connect()
    user = await client.login(args.user, args.password)
    print(f"echo bot {user.username} (uid {user.uid}) logged in", flush=True)
    await finished  # until interrupted, or the session ends


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from tinychat.client import log_warnings_to_stderr

    log_warnings_to_stderr()  # the library's warnings and errors, on stderr
    from twisted.internet import defer, task

    task.react(lambda reactor: defer.ensureDeferred(run(reactor, args)))


if __name__ == "__main__":
    main()
