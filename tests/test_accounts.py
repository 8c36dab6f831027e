"""Accounts end to end against a real node, on SQLite and on MariaDB."""

from __future__ import annotations

import re

import pyotp
import pytest

from tests.chat import PASSWORD
from tinychat.client.errors import (
    AlreadyLoggedInError,
    AuthFailedError,
    CodeInvalidError,
    EmailTakenError,
    InvalidEmailError,
    InvalidUsernameError,
    NotLoggedInError,
    RateLimitedError,
    TokenInvalidError,
    TotpInvalidError,
    TotpRequiredError,
    TotpStateError,
    UsernameTakenError,
    UserNotFoundError,
    WeakPasswordError,
)
from tinychat.protocol import CodePurpose, KickedPush, KickReason

pytestmark = pytest.mark.integration


def test_code_arrives_by_mail_and_registers_the_account(users, smtp_server):
    client = users.connect()
    sent = client.request_code("Alice@Example.com", CodePurpose.REGISTER)
    assert sent.expires_in_s == 300 and sent.resend_after_s == 60
    mail = smtp_server.wait_for_mail("alice@example.com")
    assert "verification code" in mail["Subject"].lower()
    body = mail.get_body(preferencelist=("plain",)).get_content()
    code = re.search(r"\b(\d{6})\b", body).group(1)
    uid = client.register("Alice", "alice@example.com", PASSWORD, code)
    assert uid >= 10000
    assert client.login("alice", PASSWORD).uid == uid


def test_a_code_is_used_once(users, smtp_server):
    client = users.connect()
    client.request_code("bob@example.com")
    code = smtp_server.code_for("bob@example.com")
    client.register("bob", "bob@example.com", PASSWORD, code)
    with pytest.raises((CodeInvalidError, EmailTakenError)):
        client.register("bob2", "bob@example.com", PASSWORD, code)


def test_wrong_codes_use_up_the_tries(users, smtp_server):
    client = users.connect()
    client.request_code("carol@example.com")
    code = smtp_server.code_for("carol@example.com")
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        with pytest.raises(CodeInvalidError):
            client.register("carol", "carol@example.com", PASSWORD, wrong)
    with pytest.raises(CodeInvalidError):
        client.register("carol", "carol@example.com", PASSWORD, code)


def test_at_most_one_code_per_minute(users, smtp_server):
    client = users.connect()
    client.request_code("dave@example.com")
    with pytest.raises(RateLimitedError) as info:
        client.request_code("dave@example.com")
    assert 0 < info.value.retry_after <= 60


def test_registration_refusals(users, smtp_server):
    _, email, _ = users.register("Erin")
    client = users.connect()
    client.request_code("frank@example.com")
    code = smtp_server.code_for("frank@example.com")
    with pytest.raises(InvalidUsernameError):
        client.register("no spaces", "frank@example.com", PASSWORD, code)
    with pytest.raises(InvalidUsernameError):
        client.register("ab", "frank@example.com", PASSWORD, code)
    with pytest.raises(UsernameTakenError):
        client.register("ERIN", "frank@example.com", PASSWORD, code)
    with pytest.raises(WeakPasswordError):
        client.register("frank", "frank@example.com", "short", code)
    with pytest.raises(InvalidEmailError):
        client.register("frank", "not-an-address", PASSWORD, code)
    with pytest.raises(EmailTakenError):
        client.request_code(email)
    assert client.register("frank", "frank@example.com", PASSWORD, code)


def test_login_by_username_email_or_uid(users):
    _, email, uid = users.register("Grace")
    for identifier in ("grace", "GRACE", email.upper(), str(uid)):
        client = users.connect()
        assert client.login(identifier, PASSWORD).uid == uid
        client.close()


def test_unknown_user_and_wrong_password_give_the_same_error(users):
    users.register("heidi")
    client = users.connect()
    with pytest.raises(AuthFailedError) as wrong_password:
        client.login("heidi", "not the password")
    with pytest.raises(AuthFailedError) as unknown:
        client.login("nobody_here", "not the password")
    assert wrong_password.value.message == unknown.value.message


def test_repeated_failures_are_rate_limited(users):
    users.register("ivan")
    client = users.connect()
    for _ in range(5):
        with pytest.raises(AuthFailedError):
            client.login("ivan", "guess")
    with pytest.raises(RateLimitedError) as info:
        client.login("ivan", PASSWORD)
    assert 0 < info.value.retry_after <= 300
    assert "try again" in info.value.message


def test_resume_token_logs_in_until_revoked(users):
    name, _, uid = users.register("judy")
    client = users.connect()
    token = client.login(name, PASSWORD).resume_token
    client.close()
    again = users.connect()
    assert again.login_with_token(token).uid == uid
    again.logout(revoke_token=True)
    with pytest.raises(NotLoggedInError):
        again.sync()
    with pytest.raises(TokenInvalidError):
        again.login_with_token(token)


def test_state_rules(users):
    name, _, _ = users.register("ken")
    client = users.connect()
    with pytest.raises(NotLoggedInError):
        client.friends()
    client.login(name, PASSWORD)
    with pytest.raises(AlreadyLoggedInError):
        client.login(name, PASSWORD)


def test_second_login_kicks_the_first_session(users):
    name, _, _ = users.register("leo")
    first = users.connect()
    first.login(name, PASSWORD)
    second = users.connect()
    second.login(name, PASSWORD)
    kicked = first.next_push(KickedPush)
    assert kicked.reason is KickReason.NEW_LOGIN
    first.wait_closed()
    assert second.ping()


def test_two_factor_login(users):
    name, _, _ = users.register("mallory")
    client = users.connect()
    client.login(name, PASSWORD)
    setup = client.totp_setup()
    assert setup.uri.startswith("otpauth://totp/")
    totp = pyotp.TOTP(setup.secret)
    with pytest.raises(TotpInvalidError):
        client.totp_confirm("000000" if totp.now() != "000000" else "111111")
    client.totp_confirm(totp.now())
    with pytest.raises(TotpStateError):
        client.totp_setup()
    other = users.connect()
    with pytest.raises(TotpRequiredError):
        other.login(name, PASSWORD)
    with pytest.raises(TotpInvalidError):
        other.login(name, PASSWORD, "000000" if totp.now() != "000000" else "111111")
    assert other.login(name, PASSWORD, totp.now()).totp_enabled
    other.totp_disable(totp.now())
    third = users.connect()
    assert not third.login(name, PASSWORD).totp_enabled


def test_password_reset_kills_tokens_and_kicks_sessions(users, smtp_server):
    name, email, uid = users.register("niaj")
    live = users.connect()
    token = live.login(name, PASSWORD).resume_token
    helper = users.connect()
    with pytest.raises(UserNotFoundError):
        helper.request_code("nobody@example.com", CodePurpose.RESET_PASSWORD)
    helper.request_code(email, CodePurpose.RESET_PASSWORD)
    helper.reset_password(email, smtp_server.code_for(email), "a brand new password")
    assert live.next_push(KickedPush).reason is KickReason.PASSWORD_RESET
    live.wait_closed()
    with pytest.raises(TokenInvalidError):
        helper.login_with_token(token)
    with pytest.raises(AuthFailedError):
        helper.login(name, PASSWORD)
    assert helper.login(name, "a brand new password").uid == uid


def test_without_smtp_the_code_is_written_to_the_node_log(node_factory):
    from tests.chat import SyncClient
    from tests.conftest import FAST_HASHING

    with node_factory(*FAST_HASHING) as dev_node:
        client = SyncClient(dev_node.endpoint)
        client.request_code("olivia@example.com")
        match = dev_node.wait_for_log(r"verification code for olivia@example.com \(REGISTER\): (\d{6})")
        assert client.register("olivia", "olivia@example.com", PASSWORD, match.group(1)) >= 10000
        client.close()
