"""Account commands: /register, /login, /logout, /reset, /2fa, /whoami.

Secrets are only ever asked for with `ask(..., password=True)`: they are not
echoed, not accepted as command arguments and so never reach the history
file.  Obvious mistakes (a short password, a mistyped repeat) are caught
before a verification code is spent on them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tinychat.client.errors import CodeInvalidError, TotpRequiredError
from tinychat.client.repl import render
from tinychat.client.repl.bridge import wait
from tinychat.client.repl.failures import CommandError
from tinychat.client.view import LocalView
from tinychat.protocol import CodePurpose

if TYPE_CHECKING:
    from tinychat.client.repl.app import ReplApp
    from tinychat.client.repl.commands import Invocation

USERNAME = re.compile(r"^[A-Za-z0-9_]{3,32}$")  # the protocol's rule for usernames
MIN_PASSWORD = 8
CODE_TRIES = 3


async def ask_new_password(app: ReplApp, first: str = "Password: ") -> str:
    """A new password, typed twice without echo."""
    password = await app.ask(first, password=True)
    if len(password) < MIN_PASSWORD:
        raise CommandError(f"A password needs at least {MIN_PASSWORD} characters; nothing was changed.")
    if await app.ask("Same password again: ", password=True) != password:
        raise CommandError("The two passwords differ; nothing was changed.")
    return password


async def ask_code(app: ReplApp, email: str, purpose: CodePurpose) -> str:
    """Have a code mailed to `email`, say so, and ask for it."""
    await app.connected()
    sent = await wait(app.client.request_code(email, purpose))
    minutes = max(1, sent.expires_in_s // 60)
    app.console.show(render.notice(f"A code was mailed to {email}; it is valid for {minutes} minutes."))
    return await app.ask("Code from the e-mail: ")


async def register(app: ReplApp, inv: Invocation) -> None:
    """Username, e-mail, password twice, then the mailed code (a few tries at typing it)."""
    username = await app.ask("Username (3-32 letters, digits or _): ")
    if not USERNAME.match(username):
        raise CommandError("A username has 3 to 32 letters, digits or underscores; /register to try again.")
    email = await app.ask("E-mail address: ")
    if "@" not in email:
        raise CommandError(f"{email} is not an e-mail address; /register to try again.")
    password = await ask_new_password(app)
    code = await ask_code(app, email, CodePurpose.REGISTER)
    for attempt in range(1, CODE_TRIES + 1):
        await app.connected()
        try:
            uid = await wait(app.client.register(username, email, password, code))
            break
        except CodeInvalidError:
            if attempt == CODE_TRIES:
                raise
            app.console.show(render.error("That code is not right."))
            code = await app.ask("Code from the e-mail (again): ")
    app.last_login, app.last_email = username, email
    app.console.show(render.ok(f"Welcome, {username}! Your account is ready (uid {uid})."),
                     render.notice(f"Log in with /login {username}."))


async def login(app: ReplApp, inv: Invocation) -> None:
    """Password login; asks for the authenticator code only when the server wants one."""
    name = inv["name"] or await app.ask("Username, e-mail or uid: ", default=app.last_login)
    password = await app.ask(f"Password for {name}: ", password=True)
    await app.connected()
    try:
        user = await wait(app.client.login(name, password))
    except TotpRequiredError:
        code = await app.ask("Authenticator code: ")
        await app.connected()
        user = await wait(app.client.login(name, password, code))
    app.logged_in(user)


async def logout(app: ReplApp, inv: Invocation) -> None:
    name = app.username
    await wait(app.client.logout())
    app.chat = None
    app.console.show(render.ok(f"Logged out{' ' + name if name else ''}. /login to come back."))


async def reset(app: ReplApp, inv: Invocation) -> None:
    """A new password via a code mailed to the account's address."""
    email = await app.ask("E-mail address of the account: ", default=app.last_email)
    code = await ask_code(app, email, CodePurpose.RESET_PASSWORD)
    password = await ask_new_password(app, "New password: ")
    await app.connected()
    await wait(app.client.reset_password(email, code, password))
    app.console.show(render.ok("Your password is changed; any session still open elsewhere was ended."),
                     render.notice("Log in with /login and the new password."))


async def two_factor(app: ReplApp, inv: Invocation) -> None:
    """'on': show the secret and confirm it with a code; 'off': remove it with a code."""
    switch = inv["switch"]
    if not switch:
        state = "on" if app.totp_enabled else "off"
        app.console.show(render.notice(f"Two-factor login is {state}. /2fa on or /2fa off to change it."))
        return
    if switch == "on":
        secret = await wait(app.client.totp_setup())
        app.console.show(
            render.notice("Add TinyChat to your authenticator app with this link (or type in the secret):"),
            render.ok(f"  {secret.uri}"),
            render.ok(f"  Secret: {secret.secret}"))
        code = await app.ask("Code shown by the app: ")
        await wait(app.client.totp_confirm(code))
        app.totp_enabled = True
        app.console.show(render.ok("Two-factor login is on: logging in now also asks for the code."))
    else:
        code = await app.ask("Current code from your authenticator app: ")
        await wait(app.client.totp_disable(code))
        app.totp_enabled = False
        app.console.show(render.ok("Two-factor login is off."))


async def whoami(app: ReplApp, inv: Invocation) -> None:
    client = app.client
    welcome = client.welcome
    where = f"{client.endpoint} (node {welcome.node_id})" if welcome is not None else client.endpoint
    user = client.user
    if user is None or client.view.uid != user.uid:
        connected = client.connection is not None and client.connection.connected
        app.console.show(render.notice(
            f"Not logged in; {'connected to' if connected else 'not connected to'} {where}."))
        return
    view: LocalView = client.view
    two_fa = "on" if app.totp_enabled else "off"
    app.console.show(
        render.notice(f"{user.username} (uid {user.uid}, {user.email}); two-factor login {two_fa}."),
        render.dim(f"{client.state.value.replace('_', ' ')} on {where}; {len(view.friends)} friends, "
                   f"{view.unread_total} unread."))
