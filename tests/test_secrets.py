"""Secrets stay secret: nothing sensitive in the node's log, nothing in clear in the database.

A node on MariaDB (its own user, with a password) mails codes through an SMTP
server that wants AUTH; an account goes through registration, password and
token logins, a wrong password, two-factor setup and a password reset.
Then the node's whole log is searched for every secret that crossed it, and
every row of every table for the passwords and tokens.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chat import Users
from tests.conftest import FAST_HASHING
from tests.databases import MYSQL, _mysql_admin, fresh_database
from tinychat.client.errors import AuthFailedError, TokenInvalidError
from tinychat.protocol import CodePurpose, Register, RequestCode
from tinychat.testing.hostile import RawClient, code_from_log

pytestmark = pytest.mark.integration

SMTP_USER, SMTP_PASSWORD = "tinychat-mailer", "smtp-Secret-" + secrets.token_hex(8)


@pytest.fixture
def private_database(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """(database URL with a password, the password, the database name) for a user of its own."""
    with fresh_database("mysql", tmp_path) as admin_url:
        name = admin_url.rsplit("/", 1)[1]
        user, password = f"tc_{uuid.uuid4().hex[:10]}", "db-Secret-" + secrets.token_hex(8)
        admin = _mysql_admin()
        cursor = admin.cursor()
        cursor.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
        cursor.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'%'")
        host = MYSQL.split("@", 1)[1]
        try:
            yield f"mysql://{user}:{password}@{host}/{name}", password, name
        finally:
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            admin.close()


def all_rows(database: str) -> str:
    """Every value of every table of `database`, as one string to search."""
    admin = _mysql_admin()
    try:
        cursor = admin.cursor()
        cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (database,))
        text = []
        for (table,) in cursor.fetchall():
            cursor.execute(f"SELECT * FROM `{database}`.`{table}`")  # noqa: S608 - names from the catalog
            text.extend(repr(row) for row in cursor.fetchall())
        return "\n".join(text)
    finally:
        admin.close()


def test_no_secret_reaches_the_log_or_sits_in_clear_in_the_database(node_factory, smtp_server_factory,
                                                                     private_database):
    url, db_password, database = private_database
    smtp = smtp_server_factory(credentials={SMTP_USER: SMTP_PASSWORD})
    first, second, wrong = ("first " + secrets.token_hex(6)), ("second " + secrets.token_hex(6)), "wrong-guess-42"
    with node_factory("--node-id", "secrets", *FAST_HASHING, "--smtp-host", "127.0.0.1", "--smtp-port",
                      str(smtp.port), "--smtp-user", SMTP_USER, "--smtp-password", SMTP_PASSWORD, db=url) as node:
        users = Users(node.endpoint, smtp.code_for)
        try:
            client = users.connect()
            client.request_code("keeper@example.com", CodePurpose.REGISTER)
            register_code = smtp.code_for("keeper@example.com")
            client.register("keeper", "keeper@example.com", first, register_code)
            token = client.login("keeper", first).resume_token
            totp_secret = client.totp_setup().secret
            guest = users.connect()
            with pytest.raises(AuthFailedError):
                guest.login("keeper", wrong)
            assert guest.login_with_token(token).uid == client.uid
            resetter = users.connect()
            resetter.request_code("keeper@example.com", CodePurpose.RESET_PASSWORD)
            reset_code = smtp.code_for("keeper@example.com")
            resetter.reset_password("keeper@example.com", reset_code, second)
            again = users.connect()
            new_token = again.login("keeper", second).resume_token
            with pytest.raises(TokenInvalidError):  # the reset revoked the old token
                users.connect().login_with_token(token)
            stored = all_rows(database)
        finally:
            users.close()
        node.stop()
        log = node.log_text()
    assert "login uid=" in log and "sent REGISTER code mail" in log  # the log did record the activity
    logged = {name: value for name, value in {
        "first password": first, "second password": second, "wrong password": wrong, "resume token": token,
        "new resume token": new_token, "registration code": register_code, "reset code": reset_code,
        "TOTP secret": totp_secret, "SMTP password": SMTP_PASSWORD, "database password": db_password,
    }.items() if value in log}
    assert not logged, f"secrets in the node log: {sorted(logged)}"
    in_clear = {name: value for name, value in {
        "first password": first, "second password": second, "resume token": token, "new resume token": new_token,
    }.items() if value in stored}
    assert not in_clear, f"stored in clear: {sorted(in_clear)}"
    assert "$argon2id$" in stored  # passwords are argon2id hashes
    assert hashlib.sha256(new_token.encode()).hexdigest() in stored  # tokens are kept as their SHA-256 only


def test_dev_mode_logs_codes_and_nothing_else(node_factory):
    """Without SMTP the codes are logged, by design (docs/security.md), but passwords still are not."""
    password = "dev " + secrets.token_hex(6)
    with node_factory("--node-id", "dev", *FAST_HASHING) as node:
        with RawClient.to(node) as client:
            client.handshake()
            client.call(RequestCode, email="dev@example.com", purpose=CodePurpose.REGISTER)
            code = code_from_log(node, "dev@example.com")
            client.call(Register, username="dev", email="dev@example.com", password=password, code=code)
            token = client.login("dev", password).resume_token
        node.stop()
        log = node.log_text()
    assert "no --smtp-host: verification codes are written to this log" in log
    assert code in log and password not in log and token not in log
