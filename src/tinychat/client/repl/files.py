"""File commands: /send-file PATH [caption] and /download ID [PATH], with a progress bar.

/send-file uploads to the server (resumably: the server keeps what it has
received, so running the command again after Ctrl-C or a dropped connection
sends only the rest) and then sends it to the open chat, as an IMAGE when its
media type says it is one.  File messages show a short id (`/download
3fa9c1d2`); /download takes it (or any unambiguous beginning of the id, or
the whole id), fetches the file, checks it against its id (the id is its
SHA-256) and writes it: to PATH (into it, if it is a folder), or under the
file's own name in the current folder, never over an existing file there.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tinychat.client import errors
from tinychat.client.repl import render
from tinychat.client.repl.bridge import wait
from tinychat.client.repl.chats import require_chat
from tinychat.client.repl.failures import CommandError
from tinychat.protocol import Attachment, ChatMessage, MessageKind

if TYPE_CHECKING:
    from tinychat.client.repl.app import ReplApp
    from tinychat.client.repl.commands import Invocation

BLOB_ID = re.compile(r"^[0-9a-f]{64}$")
REDRAW_EVERY = 0.1  # seconds between redraws of the bar (and whenever the percentage changes)
TRANSIENT = (errors.ConnectionClosedError, errors.RequestTimeoutError, errors.ServiceUnavailableError,
             errors.InternalServerError, errors.OffsetMismatchError)


class ProgressBar:
    """A live bar under everything shown, redrawn as bytes go; one final line stays on screen."""

    def __init__(self, app: ReplApp, label: str) -> None:
        self.console = app.console
        self.label = label
        self.done = 0
        self.total = 0
        self.first: tuple[int, int] | None = None  # the first report: where a resumed transfer started
        self._drawn = (-1.0, -1)  # (when, percent) of the last redraw

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0

    def update(self, done: int, total: int) -> None:
        """The transfer's progress callback: (bytes done, total)."""
        if self.first is None:
            self.first = (done, total)
        self.done, self.total = done, total
        now = time.monotonic()
        if self.percent != self._drawn[1] or now - self._drawn[0] >= REDRAW_EVERY:
            self._drawn = (now, self.percent)
            self.console.live(render.progress(self.label, done, total, self.console.width))

    def finish(self) -> None:
        """Replace the live bar with its final state, as an ordinary line."""
        self.console.live(None)
        if self.total:
            self.console.show(render.progress(self.label, self.done, self.total, self.console.width))

    def stop(self) -> None:
        self.console.live(None)


# ------------------------------------------------------------------ sending


async def send_file(app: ReplApp, inv: Invocation) -> None:
    chat = require_chat(app)
    given = inv["PATH"]
    path = Path(os.path.expanduser(given))
    size = _readable_size(path, given)
    caption = inv["caption"]
    problem = render.too_long(caption)
    if problem:
        raise CommandError(problem.replace("That message", "That caption"))
    name = path.name
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    image = media_type.startswith("image/")
    bar = ProgressBar(app, name)
    try:
        blob_id = await wait(app.client.upload(path, name=name, media_type=media_type, progress=bar.update))
    except asyncio.CancelledError:
        bar.stop()
        app.console.show(render.warning(f"The upload of {name} stopped at {bar.percent}%: "
                                        f"/send-file {render.quoted(given)} again resumes it."))
        raise
    except TRANSIENT as e:
        bar.stop()
        raise CommandError(f"The upload of {name} stopped at {bar.percent}%: "
                           f"{render.describe_error(e)} /send-file {render.quoted(given)} again resumes it.") from None
    except OSError as e:
        bar.stop()
        raise CommandError(f"Cannot read {given}: {e.strerror or e}.") from None
    except BaseException:
        bar.stop()
        raise
    _explain_start(app, bar, name)
    bar.finish()
    if chat.thread_id:
        d = app.client.send_file(blob_id, thread_id=chat.thread_id, image=image, caption=caption)
    else:
        d = app.client.send_file(blob_id, to_uid=chat.uid, image=image, caption=caption)
    try:
        ack = await wait(d)
    except errors.ServerError as e:
        raise CommandError(f"{name} is uploaded but was not sent to {chat.name}: {render.describe_error(e)} "
                           f"/send-file {render.quoted(given)} again sends it without uploading it again.") from None
    if not chat.thread_id:
        chat.thread_id = ack.thread_id
    attachment = Attachment(blob_id=blob_id, name=name, size=size, media_type=media_type)
    msg = ChatMessage(thread_id=ack.thread_id, seq=ack.seq, sender_uid=app.client.view.uid,
                      client_msg_id=ack.client_msg_id, sent_at_ms=ack.sent_at_ms, text=caption,
                      kind=MessageKind.IMAGE if image else MessageKind.FILE, attachment=attachment)
    app.show_message(msg, here=app.chat is chat)


def _readable_size(path: Path, given: str) -> int:
    """The size of the file at `path`, or a sentence saying why it cannot be sent."""
    try:
        if path.is_dir():
            raise CommandError(f"{given} is a folder; /send-file sends one file.")
        size = path.stat().st_size
    except FileNotFoundError:
        raise CommandError(f"There is no file {given}.") from None
    except OSError as e:
        raise CommandError(f"Cannot read {given}: {e.strerror or e}.") from None
    if not path.is_file():
        raise CommandError(f"{given} is not a regular file.")
    if size == 0:
        raise CommandError(f"{given} is empty: there is nothing to send.")
    if not os.access(path, os.R_OK):
        raise CommandError(f"Cannot read {given}: permission denied.")
    return size


def _explain_start(app: ReplApp, bar: ProgressBar, name: str) -> None:
    """Say when the upload did not start from the beginning (resumed, or already there)."""
    if bar.first is None:
        return
    start, total = bar.first
    if total and start >= total:
        app.console.show(render.dim(f"{name} was on the server already; nothing had to be uploaded."))
    elif start:
        app.console.show(render.dim(f"Resumed the upload of {name} at {int(100 * start / total)}% "
                                    f"({render.size_text(start)} were on the server already)."))


# ------------------------------------------------------------------ downloading


def find_file(app: ReplApp, given: str) -> tuple[str, Attachment | None]:
    """(blob id, attachment if shown) of a file by id or the beginning of one."""
    wanted = given.strip().lower()
    if not wanted or not all(c in "0123456789abcdef" for c in wanted):
        raise CommandError(f"{given} is not a file id: use the id shown with the file, like /download "
                           f"{render.short_id(next(reversed(app.files), '3fa9c1d2'))}.")
    matches = [blob_id for blob_id in app.files if blob_id.startswith(wanted)]
    if len(matches) == 1:
        return matches[0], app.files[matches[0]]
    if len(matches) > 1:
        raise CommandError(f"Several files shown have ids starting with {given}; give more of the id.")
    if BLOB_ID.match(wanted):
        return wanted, None
    raise CommandError(f"No file with id {given} was shown in a chat; open the chat with it first "
                       f"(/chat NAME, /history more), or give the whole id.")


def safe_name(name: str, blob_id: str) -> str:
    """A file name from another user, made harmless: no folders, no hidden tricks."""
    base = Path(name.replace("\\", "/")).name.strip().lstrip(".")
    return base or f"file-{render.short_id(blob_id)}"


def free_path(path: Path) -> Path:
    """`path`, or `name (2).ext`, `name (3).ext`... when it is taken."""
    if not path.exists():
        return path
    for n in range(2, 10_000):
        candidate = path.with_name(f"{path.stem} ({n}){path.suffix}")
        if not candidate.exists():
            return candidate
    raise CommandError(f"Too many files called {path.name} in {path.parent}; give a PATH.")


def destination(given: str, name: str) -> Path:
    """Where to write: PATH (a file, or a folder to put it in), else the file's name here, unused."""
    if not given:
        return free_path(Path.cwd() / name)
    path = Path(os.path.expanduser(given))
    if path.is_dir():
        return free_path(path / name)
    if not path.parent.is_dir():
        raise CommandError(f"There is no folder {path.parent} to save into.")
    return path


async def download(app: ReplApp, inv: Invocation) -> None:
    blob_id, attachment = find_file(app, inv["ID"])
    name = safe_name(attachment.name if attachment is not None else "", blob_id)
    target = destination(inv["PATH"], name)
    bar = ProgressBar(app, name)
    try:
        data = await wait(app.client.download(blob_id, progress=bar.update))
    except asyncio.CancelledError:
        bar.stop()
        raise
    except errors.BlobNotFoundError:
        bar.stop()
        raise CommandError(f"The server has no file {render.short_id(blob_id)} for you (or no longer).") from None
    except BaseException:
        bar.stop()
        raise
    assert isinstance(data, bytes)
    if hashlib.sha256(data).hexdigest() != blob_id:
        bar.stop()
        raise CommandError(f"{name} arrived damaged (it does not match its id); nothing was saved. Try again.")
    bar.finish()
    try:
        await asyncio.to_thread(_write, target, data)
    except OSError as e:
        raise CommandError(f"Cannot write {target}: {e.strerror or e}.") from None
    app.console.show(render.ok(f"Saved {name} ({render.size_text(len(data))}) to {target}."))


def _write(path: Path, data: bytes) -> None:
    """Write all of `data` or nothing: a partial file never takes the name."""
    partial = path.with_name(f".{path.name}.part")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
