"""TinyChat from asyncio code: log in, message a friend, print the ack, exit.

    python examples/asyncio_client.py --server tcp:host=127.0.0.1:port=7420 \\
        --user alice --password 'correct horse battery' --to bob --text 'hello from asyncio' \\
        [--wait-reply 30]

The client library is built on Twisted; Twisted's asyncio reactor runs it on
the asyncio event loop, so asyncio code and TinyChat share one thread.  The
reactor must be installed before anything imports `twisted.internet.reactor`,
which is why the TinyChat imports sit inside the functions.  Every client
method returns a Deferred; `Deferred.asFuture(loop)` turns it into an asyncio
future to await.  Event handlers are called on the loop's thread, so they may
use asyncio objects directly.

Exit status: 0 on success, 1 when the server refused something, 2 when --to
is not a friend, 3 when no reply came within --wait-reply seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", action="append", required=True,
                   help="Twisted client endpoint string of a node (repeatable)")
    p.add_argument("--user", required=True, help="username, e-mail address or uid")
    p.add_argument("--password", required=True)
    p.add_argument("--to", required=True, help="the friend to message: username or uid")
    p.add_argument("--text", default="hello from asyncio")
    p.add_argument("--wait-reply", type=float, default=0.0, metavar="SECONDS",
                   help="then wait this long for the friend's reply and print it")
    return p.parse_args(argv)


async def run(args: argparse.Namespace, reactor: Any) -> int:
    """The asyncio side: plain `async def` code awaiting the client's Deferreds as futures."""
    from tinychat.client import TinyChatClient
    from tinychat.client.errors import TinyChatError
    from tinychat.protocol import ChatMessage

    loop = asyncio.get_running_loop()
    client = TinyChatClient(args.server, reactor=reactor, client_name="asyncio-example", auto_reconnect=False)
    inbox: asyncio.Queue[ChatMessage] = asyncio.Queue()
    client.on_message(inbox.put_nowait)  # runs on this loop's thread
    try:
        welcome = await client.connect().asFuture(loop)
        print(f"connected to node {welcome.node_id}", flush=True)
        user = await client.login(args.user, args.password).asFuture(loop)
        print(f"logged in as {user.username} (uid {user.uid})", flush=True)
        # login() has synced the local view: the friend list is there without another request.
        friend = (client.view.friends.get(int(args.to)) if args.to.isdigit()
                  else client.view.friend_by_name(args.to))
        if friend is None:
            print(f"{args.to} is not a friend of {user.username}", file=sys.stderr)
            return 2
        ack = await client.send_text(args.text, to_uid=friend.uid).asFuture(loop)
        print(f"ack thread_id={ack.thread_id} seq={ack.seq} sent_at_ms={ack.sent_at_ms}", flush=True)
        if args.wait_reply:
            async def reply() -> ChatMessage:
                while True:
                    message = await inbox.get()
                    if message.thread_id == ack.thread_id and message.sender_uid == friend.uid:
                        return message

            message = await asyncio.wait_for(reply(), args.wait_reply)
            print(f"reply seq={message.seq} from {friend.username}: {message.text}", flush=True)
        return 0
    except TinyChatError as e:
        print(f"error: {e!r}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"no reply within {args.wait_reply:g} s", file=sys.stderr)
        return 3
    finally:
        await client.close().asFuture(loop)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)  # first: before anything imports the default reactor
    from tinychat.client import log_warnings_to_stderr

    log_warnings_to_stderr()  # the library's warnings and errors, on stderr
    from twisted.internet import defer, task

    def start(reactor: Any) -> defer.Deferred:
        finished = defer.Deferred.fromFuture(asyncio.ensure_future(run(args, reactor), loop=loop))

        def exit_with(code: int) -> None:
            if code:
                raise SystemExit(code)

        return finished.addCallback(exit_with)

    task.react(start)  # runs the loop (as the reactor) until run() is done; exits with its status


if __name__ == "__main__":
    main()
