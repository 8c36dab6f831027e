"""Authorisation: every request in every connection state, and users reaching for others' data.

The state matrix is generated from REGISTRY, so a new request type is checked
against the state rules of docs/protocol.md without anyone writing a test;
CROSS_USER names, for every request type, the test below that checks it
cannot touch another user's data (or why it has none to touch), and
test_every_request_type_has_a_cross_user_verdict fails until a new type is
added there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.chat import PASSWORD, SyncClient, Users
from tests.conftest import FAST_HASHING
from tests.reactor_thread import call
from tests.strategies import minimal_instance
from tinychat.client.errors import ServerError
from tinychat.protocol import (
    REGISTRY,
    Access,
    AddGroupMembers,
    BeginUpload,
    CodePurpose,
    CreateGroup,
    Direction,
    DissolveGroup,
    Download,
    Error,
    ErrorCode,
    FriendRequests,
    Hello,
    History,
    HistoryPage,
    Kind,
    LeaveGroup,
    ListFriendRequests,
    ListFriends,
    ListGroupMembers,
    ListGroups,
    Login,
    LoginWithToken,
    Logout,
    MarkRead,
    Message,
    MessageKind,
    Ping,
    Pong,
    Register,
    RemoveFriend,
    RemoveGroupMember,
    RenameGroup,
    RequestCode,
    ResetPassword,
    RespondFriendRequest,
    Role,
    SearchUsers,
    SendAttachment,
    SendFriendRequest,
    SendMessage,
    SetGroupRole,
    Sync,
    TotpConfirm,
    TotpDisable,
    TotpSetup,
    UploadChunk,
    WhichNode,
    encode,
)
from tinychat.testing.hostile import CONNECTED, LOGGED_IN, READY, FuzzTarget
from tinychat.testing.nodes import run_node

pytestmark = pytest.mark.integration

REQUESTS = sorted((cls for cls in REGISTRY.values() if cls.KIND is Kind.REQUEST), key=lambda cls: cls.MSG_ID)
NOT_REQUESTS = sorted((cls for cls in REGISTRY.values() if cls.KIND is not Kind.REQUEST), key=lambda c: c.MSG_ID)


# ---------------------------------------------------------------- every request in every state


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> Iterator[FuzzTarget]:
    workdir = tmp_path_factory.mktemp("authz")
    with run_node(["--node-id", "authz", "--db", f"sqlite:///{workdir / 'authz.sqlite3'}", *FAST_HASHING],
                  workdir) as node:
        attacked = FuzzTarget(node)
        yield attacked
        attacked.close()


def _frame(cls: type[Message], request_id: int = 77) -> bytes:
    """The smallest valid frame of `cls` (a HELLO that speaks version 1)."""
    instance = minimal_instance(cls)
    if cls is Hello:
        instance.min_version = instance.max_version = 1
    if "request_id" in cls.FIELD_NAMES:
        instance.request_id = request_id
    return encode(instance)


@pytest.mark.parametrize("cls", REQUESTS + NOT_REQUESTS, ids=lambda cls: cls.__name__)
def test_before_the_handshake_only_hello_is_answered(target: FuzzTarget, cls: type[Message]):
    with target.connect(CONNECTED) as client:
        client.send(_frame(cls))
        answers = client.until_closed() if cls is not Hello else [client.receive()]
    if cls is Hello:
        assert type(answers[0]).__name__ == "Welcome"
        return
    assert len(answers) == 1 and isinstance(answers[0], Error)
    assert (answers[0].code, answers[0].request_id) == (ErrorCode.HANDSHAKE_REQUIRED, 0)


@pytest.mark.parametrize("cls", REQUESTS, ids=lambda cls: cls.__name__)
def test_after_the_handshake_user_requests_need_a_login(target: FuzzTarget, cls: type[Message]):
    with target.connect(READY) as client:
        client.send(_frame(cls))
        answer = client.response_to(77)
        if cls is Hello:
            assert answer.code is ErrorCode.INVALID_ARGUMENT
        elif cls.ACCESS is Access.USER:
            assert isinstance(answer, Error) and answer.code is ErrorCode.NOT_LOGGED_IN
        else:  # served: its reply or a refusal of its (minimal) content, never a state error
            assert not isinstance(answer, Error) or answer.code not in {
                ErrorCode.NOT_LOGGED_IN, ErrorCode.ALREADY_LOGGED_IN, ErrorCode.INTERNAL_ERROR}, answer
        assert isinstance(client.request(Ping), Pong)  # a request-level error keeps the connection


@pytest.mark.parametrize("cls", REQUESTS, ids=lambda cls: cls.__name__)
def test_after_login_guest_requests_are_refused(target: FuzzTarget, cls: type[Message]):
    with target.connect(LOGGED_IN) as client:
        client.send(_frame(cls))
        answer = client.response_to(77)
        if cls is Hello:
            assert answer.code is ErrorCode.INVALID_ARGUMENT
        elif cls.ACCESS is Access.GUEST:
            assert isinstance(answer, Error) and answer.code is ErrorCode.ALREADY_LOGGED_IN
        else:
            assert not isinstance(answer, Error) or answer.code not in {
                ErrorCode.NOT_LOGGED_IN, ErrorCode.ALREADY_LOGGED_IN, ErrorCode.INTERNAL_ERROR}, answer
        assert isinstance(client.request(Ping), Pong)


@pytest.mark.parametrize("cls", NOT_REQUESTS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("state", [READY, LOGGED_IN])
def test_responses_and_pushes_from_a_client_are_refused_but_the_connection_stays(
        target: FuzzTarget, state: str, cls: type[Message]):
    with target.connect(state) as client:
        client.send(_frame(cls, request_id=0))
        answer = client.receive()
        assert isinstance(answer, Error) and answer.code is ErrorCode.NOT_A_REQUEST
        assert isinstance(client.request(Ping), Pong)


def test_after_logout_the_connection_is_a_guest_again(target: FuzzTarget):
    with target.connect(LOGGED_IN) as client:
        assert type(client.call(Logout, revoke_token=False)).__name__ == "Ok"
        assert client.request(Sync).code is ErrorCode.NOT_LOGGED_IN
        assert client.request(ListFriends).code is ErrorCode.NOT_LOGGED_IN
        assert client.login(target.attacker, target.PASSWORD).uid  # and may log in again


# ---------------------------------------------------------------- across users

NO_OTHER_USER = "acts only on the caller's own session or account"
CROSS_USER: dict[type[Message], str] = {
    Hello: NO_OTHER_USER, Ping: NO_OTHER_USER, WhichNode: "no user data at all",
    RequestCode: "test_codes_and_tokens_work_only_for_their_own_account",
    Register: "test_codes_and_tokens_work_only_for_their_own_account",
    Login: "test_codes_and_tokens_work_only_for_their_own_account",
    LoginWithToken: "test_codes_and_tokens_work_only_for_their_own_account",
    Logout: "test_codes_and_tokens_work_only_for_their_own_account",
    ResetPassword: "test_codes_and_tokens_work_only_for_their_own_account",
    TotpSetup: "test_codes_and_tokens_work_only_for_their_own_account",
    TotpConfirm: "test_codes_and_tokens_work_only_for_their_own_account",
    TotpDisable: "test_codes_and_tokens_work_only_for_their_own_account",
    SearchUsers: "test_lists_and_searches_show_only_the_callers_view",
    SendFriendRequest: "test_friendship_rules",
    RespondFriendRequest: "test_friend_requests_are_answered_only_by_their_addressee",
    ListFriendRequests: "test_friend_requests_are_answered_only_by_their_addressee",
    ListFriends: "test_lists_and_searches_show_only_the_callers_view",
    RemoveFriend: "test_friendship_rules",
    SendMessage: "test_other_pairs_threads_are_out_of_reach",
    History: "test_other_pairs_threads_are_out_of_reach",
    Sync: "test_lists_and_searches_show_only_the_callers_view",
    MarkRead: "test_other_pairs_threads_are_out_of_reach",
    CreateGroup: "test_groups_keep_outsiders_out_and_members_in_their_role",
    AddGroupMembers: "test_groups_keep_outsiders_out_and_members_in_their_role",
    RemoveGroupMember: "test_groups_keep_outsiders_out_and_members_in_their_role",
    LeaveGroup: "test_groups_keep_outsiders_out_and_members_in_their_role",
    RenameGroup: "test_groups_keep_outsiders_out_and_members_in_their_role",
    SetGroupRole: "test_groups_keep_outsiders_out_and_members_in_their_role",
    DissolveGroup: "test_groups_keep_outsiders_out_and_members_in_their_role",
    ListGroups: "test_groups_keep_outsiders_out_and_members_in_their_role",
    ListGroupMembers: "test_groups_keep_outsiders_out_and_members_in_their_role",
    BeginUpload: "test_knowing_a_files_hash_does_not_grant_reading_it",
    UploadChunk: "test_a_partial_upload_is_neither_shown_to_nor_touched_by_another_user",
    Download: "test_files_are_read_only_by_uploaders_and_thread_members",
    SendAttachment: "test_files_are_read_only_by_uploaders_and_thread_members",
}


def test_every_request_type_has_a_cross_user_verdict():
    missing = sorted(cls.__name__ for cls in REQUESTS if cls not in CROSS_USER)
    assert not missing, f"add these request types to CROSS_USER in tests/test_authz.py, with a test: {missing}"
    for verdict in CROSS_USER.values():
        if verdict.startswith("test_"):
            assert verdict in globals(), f"CROSS_USER names a test that does not exist: {verdict}"


def refusal(client: SyncClient, request_type: type[Message], **fields: Any) -> ErrorCode | None:
    """The error code a request is refused with (None: it was served)."""
    conn = client.client.connection

    def ask():
        return conn.request(request_type, **fields).addCallbacks(lambda _: None,
                                                                 lambda f: f.trap(ServerError) and f.value.code)

    return call(ask)


def answer(client: SyncClient, request_type: type[Message], **fields: Any) -> Any:
    return call(client.client.connection.request, request_type, **fields)


@pytest.fixture
def trio(users: Users) -> tuple[SyncClient, SyncClient, SyncClient, int]:
    """alice and bob are friends with a thread holding one message; carol is nobody's friend."""
    alice, bob, carol = users.logged_in(), users.logged_in(), users.logged_in()
    thread_id = users.friends(alice, bob)
    alice.send_text("private", to_uid=bob.uid)
    return alice, bob, carol, thread_id


def test_other_pairs_threads_are_out_of_reach(trio):
    alice, bob, carol, thread_id = trio
    for request_type, fields in [
        (History, dict(thread_id=thread_id, cursor_seq=0, direction=Direction.BEFORE, limit=10)),
        (MarkRead, dict(thread_id=thread_id, seq=1)),
        (SendMessage, dict(thread_id=thread_id, to_uid=0, client_msg_id=1, text="let me in")),
    ]:
        assert refusal(carol, request_type, **fields) is ErrorCode.THREAD_NOT_FOUND
        # The same answer as for a thread that does not exist: no existence oracle.
        assert refusal(carol, request_type, **{**fields, "thread_id": thread_id + 1000}) is ErrorCode.THREAD_NOT_FOUND
    assert refusal(carol, SendMessage, thread_id=0, to_uid=bob.uid, client_msg_id=2, text="hi") is \
        ErrorCode.NOT_FRIENDS
    assert thread_id not in {t.thread_id for t in carol.sync().threads}
    page = answer(alice, History, thread_id=thread_id, cursor_seq=0, direction=Direction.BEFORE, limit=10)
    assert isinstance(page, HistoryPage) and [m.text for m in page.messages] == ["private"]


def test_friend_requests_are_answered_only_by_their_addressee(users: Users):
    alice, bob, carol = users.logged_in(), users.logged_in(), users.logged_in()
    request_id = alice.add_friend(bob.uid, "hi bob")
    for someone in (carol, alice):  # a third user, and the asker herself
        assert refusal(someone, RespondFriendRequest, friend_request_id=request_id, accept=True, remark="") is \
            ErrorCode.FRIEND_REQUEST_NOT_FOUND
    assert refusal(carol, RespondFriendRequest, friend_request_id=request_id + 99, accept=True, remark="") is \
        ErrorCode.FRIEND_REQUEST_NOT_FOUND
    listed = answer(carol, ListFriendRequests)
    assert isinstance(listed, FriendRequests) and not listed.incoming and not listed.outgoing
    assert bob.accept_friend(request_id).accepted  # still pending for its addressee


def test_friendship_rules(trio):
    alice, bob, carol, thread_id = trio
    assert refusal(carol, RemoveFriend, uid=bob.uid) is ErrorCode.NOT_FRIENDS
    assert refusal(alice, SendFriendRequest, to_uid=alice.uid, greeting="") is ErrorCode.CANNOT_FRIEND_SELF
    assert refusal(alice, SendFriendRequest, to_uid=bob.uid, greeting="") is ErrorCode.ALREADY_FRIENDS
    assert refusal(alice, SendFriendRequest, to_uid=bob.uid + 10_000, greeting="") is ErrorCode.USER_NOT_FOUND
    assert refusal(alice, RemoveFriend, uid=bob.uid) is None
    assert refusal(bob, SendMessage, thread_id=thread_id, to_uid=0, client_msg_id=3, text="still?") is \
        ErrorCode.NOT_FRIENDS
    assert refusal(bob, RemoveFriend, uid=alice.uid) is ErrorCode.NOT_FRIENDS
    history = refusal(bob, History, thread_id=thread_id, cursor_seq=0, direction=Direction.BEFORE, limit=5)
    assert history is None  # the thread's history stays readable


def test_lists_and_searches_show_only_the_callers_view(trio):
    alice, bob, carol, _ = trio
    (found,) = [u for u in carol.search(alice.client.user.username) if u.uid == alice.uid]
    assert not found.is_friend and not found.online  # presence is for friends only
    (seen_by_bob,) = [u for u in bob.search(alice.client.user.username) if u.uid == alice.uid]
    assert seen_by_bob.is_friend and seen_by_bob.online
    assert carol.friends() == []
    assert carol.sync().threads == []
    assert {f.uid for f in alice.friends()} == {bob.uid}


def test_groups_keep_outsiders_out_and_members_in_their_role(users: Users):
    owner, member, outsider, stranger = (users.logged_in() for _ in range(4))
    users.friends(owner, member)
    users.friends(owner, outsider)  # a friend of the owner, but not in the group
    assert refusal(owner, CreateGroup, name="x", member_uids=[stranger.uid]) is ErrorCode.NOT_FRIENDS
    group = answer(owner, CreateGroup, name="inner circle", member_uids=[member.uid]).group
    g = group.thread_id
    for request_type, fields in [
        (ListGroupMembers, {}), (LeaveGroup, {}), (AddGroupMembers, {"uids": [outsider.uid]}),
        (RenameGroup, {"name": "mine now"}), (DissolveGroup, {}), (RemoveGroupMember, {"uid": member.uid}),
        (SetGroupRole, {"uid": outsider.uid, "role": Role.OWNER}),
        (History, {"cursor_seq": 0, "direction": Direction.BEFORE, "limit": 10}), (MarkRead, {"seq": 1}),
        (SendMessage, {"to_uid": 0, "client_msg_id": 9, "text": "hello?"}),
    ]:
        assert refusal(outsider, request_type, thread_id=g, **fields) is ErrorCode.THREAD_NOT_FOUND, request_type
    assert g not in {info.thread_id for info in answer(outsider, ListGroups).groups}
    for request_type, fields in [
        (AddGroupMembers, {"uids": [outsider.uid]}), (RenameGroup, {"name": "coup"}), (DissolveGroup, {}),
        (RemoveGroupMember, {"uid": owner.uid}), (SetGroupRole, {"uid": member.uid, "role": Role.ADMIN}),
    ]:
        assert refusal(member, request_type, thread_id=g, **fields) is ErrorCode.PERMISSION_DENIED, request_type
    assert refusal(owner, AddGroupMembers, thread_id=g, uids=[stranger.uid]) is ErrorCode.NOT_FRIENDS
    assert [m.uid for m in answer(member, ListGroupMembers, thread_id=g).members] == [owner.uid, member.uid]
    assert refusal(owner, RemoveGroupMember, thread_id=g, uid=member.uid) is None
    assert refusal(member, SendMessage, thread_id=g, to_uid=0, client_msg_id=10, text="back?") is \
        ErrorCode.THREAD_NOT_FOUND


def _upload(client: SyncClient, data: bytes) -> str:
    return call(client.client.upload, data, name="secret.txt", media_type="text/plain")


def test_files_are_read_only_by_uploaders_and_thread_members(trio):
    alice, bob, carol, _ = trio
    data = b"the plans " * 300
    blob_id = _upload(alice, data)
    for someone in (bob, carol):  # not shared yet: only the uploader may read
        assert refusal(someone, Download, blob_id=blob_id, offset=0, length=100) is ErrorCode.BLOB_NOT_FOUND
    assert refusal(carol, SendAttachment, thread_id=0, to_uid=alice.uid, client_msg_id=5, kind=MessageKind.FILE,
                   blob_id=blob_id, caption="") in {ErrorCode.NOT_FRIENDS, ErrorCode.BLOB_NOT_FOUND}
    call(alice.client.send_file, blob_id, to_uid=bob.uid)
    assert call(bob.client.download, blob_id) == data  # a member of a thread that carries it
    assert refusal(carol, Download, blob_id=blob_id, offset=0, length=100) is ErrorCode.BLOB_NOT_FOUND
    # Another user's upload in progress cannot be appended to without declaring it.
    partial = b"half of something" * 100
    digest = hashlib.sha256(partial).hexdigest()
    answer(alice, BeginUpload, name="p", size=len(partial), media_type="", sha256=digest)
    assert refusal(carol, UploadChunk, blob_id=digest, offset=0, data=b"junk") is ErrorCode.BLOB_NOT_FOUND


def _send_chunks(client: SyncClient, blob_id: str, data: bytes, offset: int, chunk: int) -> list[Any]:
    """UPLOAD_CHUNK from `offset` to the end, one at a time: each answer, or the code of the first refusal."""
    conn = client.client.connection
    answers: list[Any] = []
    while offset < len(data):
        def send(at: int = offset) -> Any:
            return conn.request(UploadChunk, blob_id=blob_id, offset=at, data=data[at:at + chunk]).addErrback(
                lambda f: f.trap(ServerError) and f.value.code)

        state = call(send)
        if isinstance(state, ErrorCode):
            return [*answers, state]
        assert state.complete == (state.offset == len(data))
        answers.append(state.offset)
        offset = state.offset
    return answers


def test_knowing_a_files_hash_does_not_grant_reading_it(users: Users):
    alice, bob, carol = users.logged_in(), users.logged_in(), users.logged_in()
    users.friends(carol, bob)
    data = b"alice's diary " * 10_000  # 140,000 bytes: three chunks
    blob_id = _upload(alice, data)
    # Carol knows the hash and the size: she is answered as for a file nobody has (offset 0, not
    # complete), and may neither read nor send it.
    state = answer(carol, BeginUpload, name="guess", size=len(data), media_type="", sha256=blob_id)
    unknown = hashlib.sha256(b"x" * len(data)).hexdigest()
    fresh = answer(carol, BeginUpload, name="new", size=len(data), media_type="", sha256=unknown)
    assert (state.blob_id, state.offset, state.complete) == (blob_id, 0, False)
    assert (fresh.offset, fresh.complete, fresh.chunk_bytes) == (0, False, state.chunk_bytes)
    assert refusal(carol, Download, blob_id=blob_id, offset=0, length=100) is ErrorCode.BLOB_NOT_FOUND
    assert refusal(carol, SendAttachment, thread_id=0, to_uid=bob.uid, client_msg_id=11, kind=MessageKind.FILE,
                   blob_id=blob_id, caption="") is ErrorCode.BLOB_NOT_FOUND
    # Other bytes of the same size claiming that hash: every chunk is taken, the last is refused with
    # HASH_MISMATCH (exactly as a new file's wrong bytes are), and nothing was granted.
    forged = data[:70_000] + b"?" + data[70_001:]
    chunk = state.chunk_bytes
    steps = _send_chunks(carol, blob_id, forged, 0, chunk)
    assert steps == [chunk, 2 * chunk, ErrorCode.HASH_MISMATCH]
    assert refusal(carol, Download, blob_id=blob_id, offset=0, length=100) is ErrorCode.BLOB_NOT_FOUND
    again = answer(carol, BeginUpload, name="guess", size=len(data), media_type="", sha256=blob_id)
    assert (again.offset, again.complete) == (0, False)  # the failed attempt counts for nothing
    # Claiming the hash with another size is refused the same way, after the last chunk.
    short = data[:-1]
    answer(carol, BeginUpload, name="guess", size=len(short), media_type="", sha256=blob_id)
    assert _send_chunks(carol, blob_id, short, 0, chunk)[-1] is ErrorCode.HASH_MISMATCH
    assert refusal(carol, Download, blob_id=blob_id, offset=0, length=100) is ErrorCode.BLOB_NOT_FOUND
    # A chunk out of order is refused with the offset to resume from; nothing is skipped.
    answer(carol, BeginUpload, name="guess", size=len(data), media_type="", sha256=blob_id)
    assert refusal(carol, UploadChunk, blob_id=blob_id, offset=chunk, data=data[chunk:2 * chunk]) is \
        ErrorCode.OFFSET_MISMATCH
    # Someone who has the bytes sends them all (compared, not stored again) and may then read and send it.
    progress: list[int] = []
    assert call(carol.client.upload, data, name="diary.txt", progress=lambda done, total: progress.append(done)) \
        == blob_id
    assert progress[0] == 0 and progress[-1] == len(data) and len(progress) > 2
    assert call(carol.client.download, blob_id) == data
    call(carol.client.send_file, blob_id, to_uid=bob.uid)
    assert call(bob.client.download, blob_id) == data
    # Once proven, uploading it again completes at once.
    again = answer(carol, BeginUpload, name="diary.txt", size=len(data), media_type="", sha256=blob_id)
    assert (again.offset, again.complete) == (len(data), True)


def test_a_partial_upload_is_neither_shown_to_nor_touched_by_another_user(users: Users):
    alice, carol = users.logged_in(), users.logged_in()
    data = b"work in progress " * 10_000
    blob_id = hashlib.sha256(data).hexdigest()
    chunk = answer(alice, BeginUpload, name="wip", size=len(data), media_type="", sha256=blob_id).chunk_bytes
    assert refusal(alice, UploadChunk, blob_id=blob_id, offset=0, data=data[:chunk]) is None
    # Carol starts from zero on her own, and her wrong bytes do not spoil Alice's upload.
    state = answer(carol, BeginUpload, name="wip", size=len(data), media_type="", sha256=blob_id)
    assert (state.offset, state.complete) == (0, False)
    assert refusal(carol, UploadChunk, blob_id=blob_id, offset=chunk, data=data[chunk:2 * chunk]) is \
        ErrorCode.OFFSET_MISMATCH
    junk = bytes(len(data))
    assert _send_chunks(carol, blob_id, junk, 0, chunk)[-1] is ErrorCode.HASH_MISMATCH
    resumed = answer(alice, BeginUpload, name="wip", size=len(data), media_type="", sha256=blob_id)
    assert (resumed.offset, resumed.complete) == (chunk, False)
    assert _send_chunks(alice, blob_id, data, chunk, chunk)[-1] == len(data)
    assert call(alice.client.download, blob_id) == data
    assert refusal(carol, Download, blob_id=blob_id, offset=0, length=100) is ErrorCode.BLOB_NOT_FOUND


def test_codes_and_tokens_work_only_for_their_own_account(users: Users, smtp_server):
    _, alice_email, _ = users.register()
    _, bob_email, _ = users.register()
    guest = users.connect()
    guest.request_code(alice_email, CodePurpose.RESET_PASSWORD)
    alice_code = smtp_server.code_for(alice_email)
    # Alice's reset code does not reset Bob's password, nor register a new address.
    assert refusal(guest, ResetPassword, email=bob_email, code=alice_code, new_password="taken over!") is \
        ErrorCode.CODE_INVALID
    assert refusal(guest, Register, username="mallory", email="mallory@example.com", password=PASSWORD,
                   code=alice_code) is ErrorCode.CODE_INVALID
    alice = users.connect()
    token = alice.login(alice_email, PASSWORD).resume_token
    bob = users.connect()
    bob.login(bob_email, PASSWORD)
    assert refusal(bob, TotpConfirm, code="123456") is ErrorCode.TOTP_STATE  # nothing set up: own state only
    assert refusal(bob, TotpDisable, code="123456") is ErrorCode.TOTP_STATE
    answer(bob, TotpSetup)
    assert refusal(alice, TotpDisable, code="123456") is ErrorCode.TOTP_STATE  # Bob's setup is not Alice's
    assert refusal(bob, Logout, revoke_token=True) is None  # Bob revoking his token leaves Alice's alone
    assert users.connect().login_with_token(token).uid == alice.uid
    assert refusal(guest, LoginWithToken, token=token + "x") is ErrorCode.TOKEN_INVALID
    assert refusal(guest, Login, identifier=alice_email, password=PASSWORD + "x", totp_code="") is \
        ErrorCode.AUTH_FAILED
