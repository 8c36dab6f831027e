"""Error codes of the wire protocol and the one exception the codec raises.

The numeric codes are part of the specification (docs/protocol.md); never
renumber one.  Codes below 10 are connection-level: the server sends the error
and closes the connection.  All others refuse one request and keep it open.
"""

from __future__ import annotations

from enum import IntEnum


class ErrorCode(IntEnum):
    """Every error a TinyChat server can answer with."""

    # Connection-level: the frame stream cannot go on, the connection closes.
    MALFORMED_FRAME = 1
    FRAME_TOO_LARGE = 2
    UNKNOWN_MESSAGE = 3
    UNSUPPORTED_VERSION = 4
    HANDSHAKE_REQUIRED = 5
    TIMEOUT = 6
    LIMIT_EXCEEDED = 7
    # Request-level: this request is refused, the connection stays open.
    NOT_IMPLEMENTED = 10
    INVALID_ARGUMENT = 11
    NOT_LOGGED_IN = 12
    ALREADY_LOGGED_IN = 13
    RATE_LIMITED = 14
    INTERNAL_ERROR = 15
    UNAVAILABLE = 16
    NOT_A_REQUEST = 17
    # Accounts.
    AUTH_FAILED = 100
    TOTP_REQUIRED = 101
    TOTP_INVALID = 102
    TOKEN_INVALID = 103
    CODE_INVALID = 104
    USERNAME_TAKEN = 105
    EMAIL_TAKEN = 106
    INVALID_USERNAME = 107
    INVALID_EMAIL = 108
    WEAK_PASSWORD = 109
    TOTP_STATE = 110
    # Friends and users.
    USER_NOT_FOUND = 200
    ALREADY_FRIENDS = 201
    CANNOT_FRIEND_SELF = 202
    FRIEND_REQUEST_NOT_FOUND = 203
    NOT_FRIENDS = 204
    # Threads, groups and messages.
    THREAD_NOT_FOUND = 300
    PERMISSION_DENIED = 301
    GROUP_FULL = 302
    # Files.
    BLOB_NOT_FOUND = 400
    HASH_MISMATCH = 401
    OFFSET_MISMATCH = 402
    TOO_LARGE = 403

    @property
    def closes_connection(self) -> bool:
        """Connection-level errors end the connection after being sent."""
        return self.value < 10


ERROR_MEANINGS: dict[ErrorCode, str] = {
    ErrorCode.MALFORMED_FRAME: "The frame could not be decoded: short or trailing body bytes, "
    "invalid UTF-8, a field over its maximum, an invalid enum value.",
    ErrorCode.FRAME_TOO_LARGE: "The header declared a body longer than the announced maximum; "
    "the body is not read.",
    ErrorCode.UNKNOWN_MESSAGE: "The msg_id is not defined by this protocol version.",
    ErrorCode.UNSUPPORTED_VERSION: "No protocol version in the client's range is spoken by the server.",
    ErrorCode.HANDSHAKE_REQUIRED: "The first frame of a connection must be HELLO.",
    ErrorCode.TIMEOUT: "Nothing arrived within the idle timeout, or the handshake or login "
    "deadline passed.",
    ErrorCode.LIMIT_EXCEEDED: "A server limit on connections was exceeded: too many connections from "
    "the client's address, or requests kept coming after RATE_LIMITED. Reconnect later, and slower.",
    ErrorCode.NOT_IMPLEMENTED: "The server knows the request but does not serve it.",
    ErrorCode.INVALID_ARGUMENT: "A field is well-formed but its value is not acceptable "
    "(empty text, limit out of range, both or neither target given...).",
    ErrorCode.NOT_LOGGED_IN: "The request needs a logged-in session.",
    ErrorCode.ALREADY_LOGGED_IN: "The request is only allowed before login.",
    ErrorCode.RATE_LIMITED: "Too many requests or failures; retry_after_ms says when to retry.",
    ErrorCode.INTERNAL_ERROR: "The server failed unexpectedly; the request may be retried.",
    ErrorCode.UNAVAILABLE: "A backing service (database, bus) is down; nothing was stored. Retry later.",
    ErrorCode.NOT_A_REQUEST: "The msg_id is a response or push, which clients must not send.",
    ErrorCode.AUTH_FAILED: "Unknown user or wrong password (deliberately indistinguishable).",
    ErrorCode.TOTP_REQUIRED: "The account has two-factor login; send the authenticator code.",
    ErrorCode.TOTP_INVALID: "The authenticator code is wrong.",
    ErrorCode.TOKEN_INVALID: "The resume token is unknown, revoked or expired.",
    ErrorCode.CODE_INVALID: "The e-mail verification code is wrong, expired or used up.",
    ErrorCode.USERNAME_TAKEN: "Another account has this username (case-insensitive).",
    ErrorCode.EMAIL_TAKEN: "Another account has this e-mail address.",
    ErrorCode.INVALID_USERNAME: "Usernames are 3-32 letters, digits or underscores.",
    ErrorCode.INVALID_EMAIL: "The e-mail address is not of the form local@domain.",
    ErrorCode.WEAK_PASSWORD: "Passwords have at least 8 characters.",
    ErrorCode.TOTP_STATE: "Two-factor login is not in the state this request needs "
    "(not set up, already enabled, or not enabled).",
    ErrorCode.USER_NOT_FOUND: "No user has this uid.",
    ErrorCode.ALREADY_FRIENDS: "The users are already friends.",
    ErrorCode.CANNOT_FRIEND_SELF: "A user cannot send a friend request to themself.",
    ErrorCode.FRIEND_REQUEST_NOT_FOUND: "No pending friend request with this id is addressed to you.",
    ErrorCode.NOT_FRIENDS: "Direct messages and this operation need the users to be friends.",
    ErrorCode.THREAD_NOT_FOUND: "The thread does not exist or you are not a member of it.",
    ErrorCode.PERMISSION_DENIED: "Your role in the group does not allow this (owner or admin needed).",
    ErrorCode.GROUP_FULL: "The group would exceed its member limit.",
    ErrorCode.BLOB_NOT_FOUND: "No such file, or you may not read it (only members of a thread that "
    "carries it, and its uploaders, may).",
    ErrorCode.HASH_MISMATCH: "The uploaded bytes do not have the declared SHA-256; the upload was discarded.",
    ErrorCode.OFFSET_MISMATCH: "The chunk does not start where the stored part ends; resume from the "
    "offset in the error text (also returned by BEGIN_UPLOAD).",
    ErrorCode.TOO_LARGE: "The file is larger than the server accepts (see the limits).",
}


class ProtocolError(Exception):
    """A frame or request that the protocol refuses, with the code to answer with."""

    def __init__(self, code: ErrorCode, message: str = "", retry_after_ms: int = 0) -> None:
        self.code = ErrorCode(code)
        self.message = message or ERROR_MEANINGS.get(self.code, self.code.name)
        self.retry_after_ms = retry_after_ms
        super().__init__(f"{self.code.name}: {self.message}")
