"""Every message of TinyChat protocol version 1, one class per msg_id.

Ids are grouped by area: 0x00xx connection, 0x01xx accounts, 0x02xx users and
friends, 0x03xx threads and messages, 0x04xx cluster, 0x05xx groups, 0x06xx
files, 0x08xx server pushes.  Requests and responses start with the
client-chosen `request_id`; pushes have none.
"""

from __future__ import annotations

from enum import IntEnum

from .errors import ErrorCode
from .schema import Access, Kind, Message, Wire, field, message, record
from .wire import BOOL, U16, U32, U64, Bytes, Enum8, Enum16, ListOf, Record, String, U64List

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)

# Field limits, in bytes of UTF-8 unless said otherwise.  Part of the spec.
MAX_USERNAME = 32
MAX_EMAIL = 254
MAX_PASSWORD = 256
MAX_CODE = 16
MAX_TOKEN = 128
MAX_NAME = 64
MAX_GREETING = 256
MAX_REMARK = 64
MAX_TEXT_BYTES = 16_000
MAX_TEXT_CHARS = 4_000
MAX_ERROR_TEXT = 512
MAX_SEARCH_RESULTS = 20
MAX_HISTORY_PAGE = 100
MAX_LIST = 10_000
MAX_GROUP_NAME = 64
MAX_GROUP_INVITE = 500
MAX_FILE_NAME = 255
MAX_MEDIA_TYPE = 127
MAX_CHUNK = 256 * 1024
SHA256_HEX = 64

REQUEST_ID = field(U32, "Chosen by the client; the response echoes it.")


class CodePurpose(IntEnum):
    """What an e-mail verification code is for."""

    REGISTER = 1
    RESET_PASSWORD = 2


class ThreadKind(IntEnum):
    """A conversation between two users, or a group."""

    DIRECT = 1
    GROUP = 2


class Direction(IntEnum):
    """Which side of the cursor a history page is taken from."""

    BEFORE = 0
    AFTER = 1


class MessageKind(IntEnum):
    """What a message carries."""

    TEXT = 1
    IMAGE = 2
    FILE = 3


class Role(IntEnum):
    """A member's role in a group."""

    MEMBER = 0
    ADMIN = 1
    OWNER = 2


class GroupChange(IntEnum):
    """What happened to a group, in a GROUP_CHANGED push."""

    ADDED = 1  # subject_uid joined (or, for the subject itself, was added)
    REMOVED = 2  # subject_uid was removed by actor_uid
    LEFT = 3  # subject_uid left
    RENAMED = 4  # the group is now called `name`
    ROLE_CHANGED = 5  # subject_uid has a new role (ownership handed over: the old owner is ADMIN)
    DISSOLVED = 6  # the group is gone


class KickReason(IntEnum):
    """Why the server ended a session."""

    NEW_LOGIN = 1
    PASSWORD_RESET = 2
    SERVER_SHUTDOWN = 3
    LOGGED_OUT = 4


# ---------------------------------------------------------------- records


@record
class UserSummary(Wire):
    """A search result."""

    uid: int = field(U64, "User id.")
    username: str = field(String(MAX_USERNAME), "Display form of the username.")
    is_friend: bool = field(BOOL, "Already a friend of the searching user.")
    online: bool = field(BOOL, "Online now (only shown for friends; false otherwise).")


@record
class FriendInfo(Wire):
    """One entry of the friend list."""

    uid: int = field(U64, "Friend's user id.")
    username: str = field(String(MAX_USERNAME), "Friend's username.")
    remark: str = field(String(MAX_REMARK), "Private note the user set when accepting; may be empty.")
    online: bool = field(BOOL, "Friend is online now.")
    thread_id: int = field(U64, "The direct thread between the two users.")


@record
class FriendRequestInfo(Wire):
    """A pending friend request."""

    friend_request_id: int = field(U64, "Id of the friend request.")
    from_uid: int = field(U64, "Who asked.")
    from_username: str = field(String(MAX_USERNAME), "Their username.")
    to_uid: int = field(U64, "Who is asked.")
    to_username: str = field(String(MAX_USERNAME), "Their username.")
    greeting: str = field(String(MAX_GREETING), "Text sent with the request; may be empty.")
    created_at_ms: int = field(U64, "Server time of the request, ms since the Unix epoch.")


@record
class ThreadInfo(Wire):
    """A thread as seen by one member, for sync."""

    thread_id: int = field(U64, "Thread id.")
    kind: ThreadKind = field(Enum8(ThreadKind), "DIRECT=1, GROUP=2.")
    peer_uid: int = field(U64, "The other user of a direct thread; 0 for groups.")
    title: str = field(String(MAX_NAME), "Peer's username or group name.")
    last_seq: int = field(U64, "Seq of the newest message; 0 when empty.")
    read_seq: int = field(U64, "The member's read mark.")
    unread: int = field(U32, "Messages after the read mark.")


@record
class Attachment(Wire):
    """A stored file referenced by a message; all empty/zero for text messages."""

    blob_id: str = field(String(SHA256_HEX), "SHA-256 of the content, lowercase hex; empty for none.", default="")
    name: str = field(String(MAX_FILE_NAME), "File name given by the uploader.", default="")
    size: int = field(U64, "Bytes.", default=0)
    media_type: str = field(String(MAX_MEDIA_TYPE), "e.g. image/png; may be empty.", default="")
    width: int = field(U32, "Image width in pixels when known, else 0.", default=0)
    height: int = field(U32, "Image height in pixels when known, else 0.", default=0)


NO_ATTACHMENT = Attachment()


@record
class ChatMessage(Wire):
    """A stored message."""

    thread_id: int = field(U64, "Thread the message belongs to.")
    seq: int = field(U64, "Position in the thread: 1, 2, 3... dense and increasing.")
    sender_uid: int = field(U64, "Author.")
    client_msg_id: int = field(U64, "The author's idempotency key.")
    sent_at_ms: int = field(U64, "Server time of the durable write, ms since the Unix epoch.")
    text: str = field(String(MAX_TEXT_BYTES), "1 to 4,000 characters (a caption, possibly empty, for files).")
    kind: MessageKind = field(Enum8(MessageKind), "TEXT=1, IMAGE=2, FILE=3.", default=MessageKind.TEXT)
    attachment: Attachment = field(Record(Attachment), "The file of an IMAGE or FILE message.",
                                   default_factory=Attachment)


@record
class GroupInfo(Wire):
    """A group the user belongs to."""

    thread_id: int = field(U64, "The group's thread.")
    name: str = field(String(MAX_GROUP_NAME), "Group name.")
    owner_uid: int = field(U64, "Its owner.")
    member_count: int = field(U32, "Members, owner included.")
    role: Role = field(Enum8(Role), "The user's own role: MEMBER=0, ADMIN=1, OWNER=2.")


@record
class GroupMember(Wire):
    """One member of a group."""

    uid: int = field(U64, "Member.")
    username: str = field(String(MAX_USERNAME), "Their username.")
    role: Role = field(Enum8(Role), "MEMBER=0, ADMIN=1, OWNER=2.")
    online: bool = field(BOOL, "Online now.")


# ---------------------------------------------------------------- connection


@message(0x0002, Kind.RESPONSE)
class Welcome(Message):
    """The server's answer to HELLO: the chosen version and the limits in force."""

    request_id: int = REQUEST_ID
    version: int = field(U16, "The protocol version both sides now speak.")
    server_name: str = field(String(MAX_NAME), "Software and version, informational.")
    node_id: str = field(String(MAX_NAME), "Id of the node this connection is on.")
    max_frame_bytes: int = field(U32, "Largest body_len the server accepts.")
    heartbeat_interval_ms: int = field(U32, "Send a frame (PING if idle) at least this often.")
    idle_timeout_ms: int = field(U32, "The server closes a connection silent for this long.")
    file_chunk_bytes: int = field(U32, "Chunk size for file transfer.")


@message(0x0001, Kind.REQUEST, reply=Welcome, access=Access.ANY)
class Hello(Message):
    """First frame of every connection: the range of versions the client speaks."""

    request_id: int = REQUEST_ID
    min_version: int = field(U16, "Oldest protocol version the client speaks.")
    max_version: int = field(U16, "Newest protocol version the client speaks.")
    client_name: str = field(String(MAX_NAME), "Client software and version, informational.")


@message(0x0004, Kind.RESPONSE)
class Pong(Message):
    """Answer to PING."""

    request_id: int = REQUEST_ID


@message(0x0003, Kind.REQUEST, reply=Pong, access=Access.ANY)
class Ping(Message):
    """Keeps the connection alive and measures round trips."""

    request_id: int = REQUEST_ID


@message(0x0005, Kind.RESPONSE)
class Error(Message):
    """A refused request (request_id echoed) or a connection error (request_id 0)."""

    request_id: int = REQUEST_ID
    code: ErrorCode = field(Enum16(ErrorCode), "See the error code table.")
    retry_after_ms: int = field(U32, "For RATE_LIMITED: wait this long before retrying; else 0.")
    message: str = field(String(MAX_ERROR_TEXT), "Human-readable explanation.")


@message(0x0006, Kind.RESPONSE)
class Ok(Message):
    """Success of a request that returns nothing else."""

    request_id: int = REQUEST_ID


# ---------------------------------------------------------------- accounts


@message(0x0102, Kind.RESPONSE)
class CodeSent(Message):
    """A verification code was mailed."""

    request_id: int = REQUEST_ID
    expires_in_s: int = field(U32, "The code is valid this long.")
    resend_after_s: int = field(U32, "A new code for this address can be asked for after this long.")


@message(0x0101, Kind.REQUEST, reply=CodeSent, access=Access.GUEST)
class RequestCode(Message):
    """Mail a 6-digit verification code to an address, for registration or reset."""

    request_id: int = REQUEST_ID
    email: str = field(String(MAX_EMAIL), "Address to send the code to.")
    purpose: CodePurpose = field(Enum8(CodePurpose), "REGISTER=1, RESET_PASSWORD=2.")


@message(0x0104, Kind.RESPONSE)
class Registered(Message):
    """The account exists; log in next."""

    request_id: int = REQUEST_ID
    uid: int = field(U64, "The new user's id.")


@message(0x0103, Kind.REQUEST, reply=Registered, access=Access.GUEST)
class Register(Message):
    """Create an account with the code mailed for REGISTER."""

    request_id: int = REQUEST_ID
    username: str = field(String(MAX_USERNAME), "3-32 letters, digits, underscores; unique ignoring case.")
    email: str = field(String(MAX_EMAIL), "Unique; must match the code's address.")
    password: str = field(String(MAX_PASSWORD), "At least 8 characters.")
    code: str = field(String(MAX_CODE), "The 6-digit code from the e-mail.")


@message(0x0107, Kind.RESPONSE)
class LoggedIn(Message):
    """The session is logged in."""

    request_id: int = REQUEST_ID
    uid: int = field(U64, "User id.")
    username: str = field(String(MAX_USERNAME), "Username.")
    email: str = field(String(MAX_EMAIL), "E-mail address.")
    resume_token: str = field(String(MAX_TOKEN), "Log in again with LOGIN_WITH_TOKEN; keep it secret.")
    token_expires_at_ms: int = field(U64, "When the token stops working, ms since the Unix epoch.")
    totp_enabled: bool = field(BOOL, "Two-factor login is on for this account.")


@message(0x0105, Kind.REQUEST, reply=LoggedIn, access=Access.GUEST)
class Login(Message):
    """Log in with a password.  Kicks any older session of the user."""

    request_id: int = REQUEST_ID
    identifier: str = field(String(MAX_EMAIL), "Username, e-mail address, or uid in decimal.")
    password: str = field(String(MAX_PASSWORD), "Password.")
    totp_code: str = field(String(MAX_CODE), "Authenticator code when two-factor login is on; else empty.")


@message(0x0106, Kind.REQUEST, reply=LoggedIn, access=Access.GUEST)
class LoginWithToken(Message):
    """Log in with a resume token from an earlier LOGGED_IN."""

    request_id: int = REQUEST_ID
    token: str = field(String(MAX_TOKEN), "The resume token.")


@message(0x0108, Kind.REQUEST, reply=Ok)
class Logout(Message):
    """End the session; the connection stays open and logged out."""

    request_id: int = REQUEST_ID
    revoke_token: bool = field(BOOL, "Also make this session's resume token unusable.")


@message(0x0109, Kind.REQUEST, reply=Ok, access=Access.ANY)
class ResetPassword(Message):
    """Set a new password with a RESET_PASSWORD code; revokes tokens, kicks sessions."""

    request_id: int = REQUEST_ID
    email: str = field(String(MAX_EMAIL), "The account's address.")
    code: str = field(String(MAX_CODE), "The 6-digit code from the e-mail.")
    new_password: str = field(String(MAX_PASSWORD), "At least 8 characters.")


@message(0x010B, Kind.RESPONSE)
class TotpSecret(Message):
    """A new authenticator secret, pending confirmation."""

    request_id: int = REQUEST_ID
    secret: str = field(String(MAX_NAME), "Base32 secret.")
    uri: str = field(String(MAX_ERROR_TEXT), "otpauth:// URI for authenticator apps (QR code).")


@message(0x010A, Kind.REQUEST, reply=TotpSecret)
class TotpSetup(Message):
    """Start enabling two-factor login; confirm with TOTP_CONFIRM."""

    request_id: int = REQUEST_ID


@message(0x010C, Kind.REQUEST, reply=Ok)
class TotpConfirm(Message):
    """Turn two-factor login on with a code from the new secret."""

    request_id: int = REQUEST_ID
    code: str = field(String(MAX_CODE), "Current authenticator code.")


@message(0x010D, Kind.REQUEST, reply=Ok)
class TotpDisable(Message):
    """Turn two-factor login off."""

    request_id: int = REQUEST_ID
    code: str = field(String(MAX_CODE), "Current authenticator code.")


# ---------------------------------------------------------------- users and friends


@message(0x0202, Kind.RESPONSE)
class SearchResults(Message):
    """Matching users, exact uid match first."""

    request_id: int = REQUEST_ID
    users: list[UserSummary] = field(ListOf(UserSummary, MAX_SEARCH_RESULTS), "At most 20.")


@message(0x0201, Kind.REQUEST, reply=SearchResults)
class SearchUsers(Message):
    """Find users by exact uid (decimal) or username prefix, ignoring case."""

    request_id: int = REQUEST_ID
    query: str = field(String(MAX_EMAIL), "A uid in decimal, or the start of a username.")


@message(0x0204, Kind.RESPONSE)
class FriendRequestSent(Message):
    """The request is pending (or was already)."""

    request_id: int = REQUEST_ID
    friend_request_id: int = field(U64, "Id of the pending friend request.")


@message(0x0203, Kind.REQUEST, reply=FriendRequestSent)
class SendFriendRequest(Message):
    """Ask a user to be friends.  Repeating it returns the same pending request."""

    request_id: int = REQUEST_ID
    to_uid: int = field(U64, "Who to ask.")
    greeting: str = field(String(MAX_GREETING), "Text shown with the request; may be empty.")


@message(0x0206, Kind.RESPONSE)
class FriendRequestResolved(Message):
    """The outcome of answering a friend request."""

    request_id: int = REQUEST_ID
    friend_request_id: int = field(U64, "The answered request.")
    accepted: bool = field(BOOL, "True if now friends.")
    peer_uid: int = field(U64, "Who had asked.")
    thread_id: int = field(U64, "The direct thread with them when accepted; else 0.")


@message(0x0205, Kind.REQUEST, reply=FriendRequestResolved)
class RespondFriendRequest(Message):
    """Accept or reject a friend request addressed to you."""

    request_id: int = REQUEST_ID
    friend_request_id: int = field(U64, "Which request.")
    accept: bool = field(BOOL, "True to accept, false to reject.")
    remark: str = field(String(MAX_REMARK), "Private note for the new friend; may be empty.")


@message(0x0208, Kind.RESPONSE)
class FriendRequests(Message):
    """Pending friend requests, to and from you."""

    request_id: int = REQUEST_ID
    incoming: list[FriendRequestInfo] = field(ListOf(FriendRequestInfo, MAX_LIST), "Addressed to you.")
    outgoing: list[FriendRequestInfo] = field(ListOf(FriendRequestInfo, MAX_LIST), "Sent by you.")


@message(0x0207, Kind.REQUEST, reply=FriendRequests)
class ListFriendRequests(Message):
    """Pending friend requests."""

    request_id: int = REQUEST_ID


@message(0x020A, Kind.RESPONSE)
class Friends(Message):
    """The friend list."""

    request_id: int = REQUEST_ID
    friends: list[FriendInfo] = field(ListOf(FriendInfo, MAX_LIST), "Ordered by username.")


@message(0x0209, Kind.REQUEST, reply=Friends)
class ListFriends(Message):
    """The friend list with each friend's online status."""

    request_id: int = REQUEST_ID


@message(0x020B, Kind.REQUEST, reply=Ok)
class RemoveFriend(Message):
    """End a friendship, on both sides.  The thread's history stays readable."""

    request_id: int = REQUEST_ID
    uid: int = field(U64, "The friend to remove.")


# ---------------------------------------------------------------- threads and messages


@message(0x0302, Kind.RESPONSE)
class MessageAck(Message):
    """The message is durably stored under (thread_id, seq)."""

    request_id: int = REQUEST_ID
    thread_id: int = field(U64, "Thread of the message.")
    seq: int = field(U64, "Its seq in the thread.")
    client_msg_id: int = field(U64, "Echo of the idempotency key.")
    sent_at_ms: int = field(U64, "Server time of the write, ms since the Unix epoch.")


@message(0x0301, Kind.REQUEST, reply=MessageAck)
class SendMessage(Message):
    """Send text to a thread, or to a friend's direct thread by uid.

    Exactly one of thread_id and to_uid is non-zero.  Sending again with the
    same client_msg_id returns the first ack and stores nothing new.
    """

    request_id: int = REQUEST_ID
    thread_id: int = field(U64, "Target thread, or 0 to address by to_uid.")
    to_uid: int = field(U64, "Friend to message, or 0 when thread_id is given.")
    client_msg_id: int = field(U64, "Random per message, unique per sender: the idempotency key.")
    text: str = field(String(MAX_TEXT_BYTES), "1 to 4,000 characters.")


@message(0x0304, Kind.RESPONSE)
class HistoryPage(Message):
    """A page of messages in ascending seq order."""

    request_id: int = REQUEST_ID
    thread_id: int = field(U64, "The thread.")
    messages: list[ChatMessage] = field(ListOf(ChatMessage, MAX_HISTORY_PAGE), "Ascending by seq.")
    has_more: bool = field(BOOL, "More messages exist beyond this page in the asked direction.")


@message(0x0303, Kind.REQUEST, reply=HistoryPage)
class History(Message):
    """A page of a thread's messages next to a cursor seq.

    BEFORE with cursor 0 gives the newest page; then pass the smallest seq
    received to walk back.  AFTER gives messages with seq > cursor (catch-up).
    """

    request_id: int = REQUEST_ID
    thread_id: int = field(U64, "The thread.")
    cursor_seq: int = field(U64, "Exclusive bound; 0 with BEFORE means from the newest.")
    direction: Direction = field(Enum8(Direction), "BEFORE=0 (older), AFTER=1 (newer).")
    limit: int = field(U16, "1 to 100 messages.")


@message(0x0306, Kind.RESPONSE)
class SyncState(Message):
    """Every thread of the user with its last seq and unread count, and pending requests."""

    request_id: int = REQUEST_ID
    threads: list[ThreadInfo] = field(ListOf(ThreadInfo, MAX_LIST), "All the user's threads.")
    friend_requests: list[FriendRequestInfo] = field(
        ListOf(FriendRequestInfo, MAX_LIST), "Pending requests addressed to the user."
    )


@message(0x0305, Kind.REQUEST, reply=SyncState)
class Sync(Message):
    """What a client needs after login or a resync to catch up."""

    request_id: int = REQUEST_ID


@message(0x0307, Kind.REQUEST, reply=Ok)
class MarkRead(Message):
    """Move the read mark of a thread forward (never back)."""

    request_id: int = REQUEST_ID
    thread_id: int = field(U64, "The thread.")
    seq: int = field(U64, "Everything up to this seq is read.")


# ---------------------------------------------------------------- cluster


@message(0x0402, Kind.RESPONSE)
class NodeAssignment(Message):
    """The node the client should use."""

    request_id: int = REQUEST_ID
    node_id: str = field(String(MAX_NAME), "Node id.")
    address: str = field(String(MAX_ERROR_TEXT), "Twisted client endpoint string, e.g. tcp:host=h:port=p.")
    connections: int = field(U32, "Its live connection count.")


@message(0x0401, Kind.REQUEST, reply=NodeAssignment, access=Access.ANY)
class WhichNode(Message):
    """Ask for the least-loaded live node."""

    request_id: int = REQUEST_ID


# ---------------------------------------------------------------- groups


@message(0x0502, Kind.RESPONSE)
class GroupCreated(Message):
    """The new group."""

    request_id: int = REQUEST_ID
    group: GroupInfo = field(Record(GroupInfo), "The group, with you as its owner.")


@message(0x0501, Kind.REQUEST, reply=GroupCreated)
class CreateGroup(Message):
    """Create a group with some of your friends; you become its owner."""

    request_id: int = REQUEST_ID
    name: str = field(String(MAX_GROUP_NAME), "1 to 64 bytes.")
    member_uids: list[int] = field(U64List(MAX_GROUP_INVITE), "Friends to add (not yourself).")


@message(0x0503, Kind.REQUEST, reply=Ok)
class AddGroupMembers(Message):
    """Owner or admin: add friends of yours to the group."""

    request_id: int = REQUEST_ID
    thread_id: int = field(U64, "The group.")
    uids: list[int] = field(U64List(MAX_GROUP_INVITE), "Users to add.")


@message(0x0504, Kind.REQUEST, reply=Ok)
class RemoveGroupMember(Message):
    """Owner (anyone but themself) or admin (members only): remove a member."""

    request_id: int = REQUEST_ID
    thread_id: int = field(U64, "The group.")
    uid: int = field(U64, "The member to remove.")


@message(0x0505, Kind.REQUEST, reply=Ok)
class LeaveGroup(Message):
    """Leave a group.  The owner must hand over ownership (or dissolve) first."""

    request_id: int = REQUEST_ID
    thread_id: int = field(U64, "The group.")


@message(0x0506, Kind.REQUEST, reply=Ok)
class RenameGroup(Message):
    """Owner: rename the group."""

    request_id: int = REQUEST_ID
    thread_id: int = field(U64, "The group.")
    name: str = field(String(MAX_GROUP_NAME), "1 to 64 bytes.")


@message(0x0507, Kind.REQUEST, reply=Ok)
class SetGroupRole(Message):
    """Owner: make a member ADMIN or MEMBER, or hand over ownership with OWNER."""

    request_id: int = REQUEST_ID
    thread_id: int = field(U64, "The group.")
    uid: int = field(U64, "The member.")
    role: Role = field(Enum8(Role), "The new role; OWNER hands the group over (you become ADMIN).")


@message(0x0508, Kind.REQUEST, reply=Ok)
class DissolveGroup(Message):
    """Owner: end the group for everyone.  Its history stays readable by its last members."""

    request_id: int = REQUEST_ID
    thread_id: int = field(U64, "The group.")


@message(0x050A, Kind.RESPONSE)
class Groups(Message):
    """The user's groups."""

    request_id: int = REQUEST_ID
    groups: list[GroupInfo] = field(ListOf(GroupInfo, MAX_LIST), "Ordered by name.")


@message(0x0509, Kind.REQUEST, reply=Groups)
class ListGroups(Message):
    """The groups the user belongs to."""

    request_id: int = REQUEST_ID


@message(0x050C, Kind.RESPONSE)
class GroupMembers(Message):
    """A group's members."""

    request_id: int = REQUEST_ID
    thread_id: int = field(U64, "The group.")
    members: list[GroupMember] = field(ListOf(GroupMember, MAX_LIST), "Owner first, then admins, then by name.")


@message(0x050B, Kind.REQUEST, reply=GroupMembers)
class ListGroupMembers(Message):
    """The members of a group you belong to, with presence."""

    request_id: int = REQUEST_ID
    thread_id: int = field(U64, "The group.")


# ---------------------------------------------------------------- files


@message(0x0602, Kind.RESPONSE)
class UploadState(Message):
    """Where an upload stands: send chunks from `offset` until `complete`."""

    request_id: int = REQUEST_ID
    blob_id: str = field(String(SHA256_HEX), "The file's id: its SHA-256, lowercase hex.")
    offset: int = field(U64, "Bytes of this upload received (stored, or matched against the stored file); "
                             "the next chunk starts here.")
    complete: bool = field(BOOL, "The file is stored and verified (at once for a file you may read already).")
    chunk_bytes: int = field(U32, "Largest chunk the server accepts.")


@message(0x0601, Kind.REQUEST, reply=UploadState)
class BeginUpload(Message):
    """Declare a file to upload, or resume one: the reply says from which offset."""

    request_id: int = REQUEST_ID
    name: str = field(String(MAX_FILE_NAME), "File name.")
    size: int = field(U64, "Total bytes.")
    media_type: str = field(String(MAX_MEDIA_TYPE), "e.g. image/png; may be empty.")
    sha256: str = field(String(SHA256_HEX), "SHA-256 of the whole content, lowercase hex.")


@message(0x0603, Kind.REQUEST, reply=UploadState)
class UploadChunk(Message):
    """Append bytes at `offset` (UPLOAD_STATE's offset); the last chunk completes the upload."""

    request_id: int = REQUEST_ID
    blob_id: str = field(String(SHA256_HEX), "From BEGIN_UPLOAD.")
    offset: int = field(U64, "Where these bytes go.")
    data: bytes = field(Bytes(MAX_CHUNK), "At most chunk_bytes.")


@message(0x0605, Kind.RESPONSE)
class DownloadChunk(Message):
    """Bytes of a file."""

    request_id: int = REQUEST_ID
    blob_id: str = field(String(SHA256_HEX), "The file.")
    offset: int = field(U64, "Where `data` starts.")
    size: int = field(U64, "Total size of the file.")
    data: bytes = field(Bytes(MAX_CHUNK), "Empty at or past the end.")


@message(0x0604, Kind.REQUEST, reply=DownloadChunk)
class Download(Message):
    """Read part of a file carried by a thread you are in (or that you uploaded)."""

    request_id: int = REQUEST_ID
    blob_id: str = field(String(SHA256_HEX), "The file.")
    offset: int = field(U64, "First byte.")
    length: int = field(U32, "At most chunk_bytes.")


@message(0x0606, Kind.REQUEST, reply=MessageAck)
class SendAttachment(Message):
    """Send an uploaded file as an IMAGE or FILE message (same ack and seq rules as SEND_MESSAGE)."""

    request_id: int = REQUEST_ID
    thread_id: int = field(U64, "Target thread, or 0 to address by to_uid.")
    to_uid: int = field(U64, "Friend to message, or 0 when thread_id is given.")
    client_msg_id: int = field(U64, "Idempotency key, as for SEND_MESSAGE.")
    kind: MessageKind = field(Enum8(MessageKind), "IMAGE=2 or FILE=3.")
    blob_id: str = field(String(SHA256_HEX), "A completed upload.")
    caption: str = field(String(MAX_TEXT_BYTES), "Optional text, up to 4,000 characters.")


# ---------------------------------------------------------------- pushes


@message(0x0801, Kind.PUSH)
class MessagePush(Message):
    """A new message in one of your threads (also sent to the author's other sessions)."""

    message: ChatMessage = field(Record(ChatMessage), "The stored message.")


@message(0x0802, Kind.PUSH)
class FriendRequestPush(Message):
    """Someone asked to be your friend."""

    request: FriendRequestInfo = field(Record(FriendRequestInfo), "The request.")


@message(0x0803, Kind.PUSH)
class FriendResponsePush(Message):
    """Your friend request was answered."""

    friend_request_id: int = field(U64, "The request.")
    peer_uid: int = field(U64, "Who answered.")
    peer_username: str = field(String(MAX_USERNAME), "Their username.")
    accepted: bool = field(BOOL, "True if now friends.")
    thread_id: int = field(U64, "The direct thread when accepted; else 0.")


@message(0x0804, Kind.PUSH)
class FriendRemovedPush(Message):
    """A friendship ended (sent to both sides' sessions)."""

    uid: int = field(U64, "The former friend.")


@message(0x0805, Kind.PUSH)
class PresencePush(Message):
    """A friend came online or went offline."""

    uid: int = field(U64, "The friend.")
    online: bool = field(BOOL, "Online now.")


@message(0x0806, Kind.PUSH)
class KickedPush(Message):
    """The session is over; the server closes the connection after this frame."""

    reason: KickReason = field(Enum8(KickReason), "Why.")
    message: str = field(String(MAX_ERROR_TEXT), "Human-readable explanation.")


@message(0x0807, Kind.PUSH)
class ResyncPush(Message):
    """Pushes may have been missed: run SYNC and fetch what is missing."""

    reason: str = field(String(MAX_ERROR_TEXT), "Why.")


@message(0x0809, Kind.PUSH)
class GroupChangedPush(Message):
    """Something happened to a group you are (or were, for REMOVED/DISSOLVED) in."""

    thread_id: int = field(U64, "The group.")
    change: GroupChange = field(Enum8(GroupChange), "What happened.")
    actor_uid: int = field(U64, "Who did it.")
    subject_uid: int = field(U64, "Whom it concerns (0 for RENAMED/DISSOLVED).")
    role: Role = field(Enum8(Role), "The subject's role after the change.")
    name: str = field(String(MAX_GROUP_NAME), "The group's name after the change.")


@message(0x0808, Kind.PUSH)
class ReadMarkPush(Message):
    """A member's read mark moved: your own (from another view) or the peer's (a read receipt)."""

    thread_id: int = field(U64, "The thread.")
    uid: int = field(U64, "Whose mark.")
    read_seq: int = field(U64, "The new mark.")


__all__ = [name for name, value in list(globals().items())
           if isinstance(value, type) and issubclass(value, (Wire, IntEnum)) and value.__module__ == __name__]
__all__ += ["NO_ATTACHMENT", "PROTOCOL_VERSION", "SHA256_HEX", "SUPPORTED_VERSIONS"]
__all__ += [name for name in list(globals()) if name.startswith("MAX_")]
