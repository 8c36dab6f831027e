"""Exceptions of the client library: one class per protocol error code.

Catch `ServerError` for anything the server refused, or a specific class such
as `AuthFailedError`; `RateLimitedError.retry_after` says when to retry.
"""

from __future__ import annotations

from tinychat.protocol import ERROR_MEANINGS, Error, ErrorCode


class TinyChatError(Exception):
    """Base of every error the client library raises."""


class ConnectionClosedError(TinyChatError):
    """The connection ended before the request was answered."""


class RequestTimeoutError(TinyChatError):
    """No response arrived within the request timeout."""


class ProtocolViolationError(TinyChatError):
    """The server sent something the protocol does not allow here."""


class ServerError(TinyChatError):
    """The server answered with an ERROR frame."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str = "", retry_after_ms: int = 0) -> None:
        self.message = message or ERROR_MEANINGS.get(self.code, self.code.name)
        self.retry_after_ms = retry_after_ms
        super().__init__(self.message)

    @property
    def retry_after(self) -> float:
        """Seconds to wait before retrying (RATE_LIMITED), else 0."""
        return self.retry_after_ms / 1000

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}: {self.message!r})"


class MalformedFrameError(ServerError):
    code = ErrorCode.MALFORMED_FRAME


class FrameTooLargeError(ServerError):
    code = ErrorCode.FRAME_TOO_LARGE


class UnknownMessageError(ServerError):
    code = ErrorCode.UNKNOWN_MESSAGE


class UnsupportedVersionError(ServerError):
    code = ErrorCode.UNSUPPORTED_VERSION


class HandshakeRequiredError(ServerError):
    code = ErrorCode.HANDSHAKE_REQUIRED


class IdleTimeoutError(ServerError):
    code = ErrorCode.TIMEOUT


class LimitExceededError(ServerError):
    """A server limit on connections was hit (flooding, too many connections from one address)."""

    code = ErrorCode.LIMIT_EXCEEDED


class NotImplementedByServerError(ServerError):
    code = ErrorCode.NOT_IMPLEMENTED


class InvalidArgumentError(ServerError):
    code = ErrorCode.INVALID_ARGUMENT


class NotLoggedInError(ServerError):
    code = ErrorCode.NOT_LOGGED_IN


class AlreadyLoggedInError(ServerError):
    code = ErrorCode.ALREADY_LOGGED_IN


class RateLimitedError(ServerError):
    code = ErrorCode.RATE_LIMITED


class InternalServerError(ServerError):
    code = ErrorCode.INTERNAL_ERROR


class ServiceUnavailableError(ServerError):
    code = ErrorCode.UNAVAILABLE


class NotARequestError(ServerError):
    code = ErrorCode.NOT_A_REQUEST


class AuthFailedError(ServerError):
    code = ErrorCode.AUTH_FAILED


class TotpRequiredError(ServerError):
    code = ErrorCode.TOTP_REQUIRED


class TotpInvalidError(ServerError):
    code = ErrorCode.TOTP_INVALID


class TokenInvalidError(ServerError):
    code = ErrorCode.TOKEN_INVALID


class CodeInvalidError(ServerError):
    code = ErrorCode.CODE_INVALID


class UsernameTakenError(ServerError):
    code = ErrorCode.USERNAME_TAKEN


class EmailTakenError(ServerError):
    code = ErrorCode.EMAIL_TAKEN


class InvalidUsernameError(ServerError):
    code = ErrorCode.INVALID_USERNAME


class InvalidEmailError(ServerError):
    code = ErrorCode.INVALID_EMAIL


class WeakPasswordError(ServerError):
    code = ErrorCode.WEAK_PASSWORD


class TotpStateError(ServerError):
    code = ErrorCode.TOTP_STATE


class UserNotFoundError(ServerError):
    code = ErrorCode.USER_NOT_FOUND


class AlreadyFriendsError(ServerError):
    code = ErrorCode.ALREADY_FRIENDS


class CannotFriendSelfError(ServerError):
    code = ErrorCode.CANNOT_FRIEND_SELF


class FriendRequestNotFoundError(ServerError):
    code = ErrorCode.FRIEND_REQUEST_NOT_FOUND


class NotFriendsError(ServerError):
    code = ErrorCode.NOT_FRIENDS


class ThreadNotFoundError(ServerError):
    code = ErrorCode.THREAD_NOT_FOUND


class PermissionDeniedError(ServerError):
    code = ErrorCode.PERMISSION_DENIED


class GroupFullError(ServerError):
    code = ErrorCode.GROUP_FULL


class BlobNotFoundError(ServerError):
    code = ErrorCode.BLOB_NOT_FOUND


class HashMismatchError(ServerError):
    code = ErrorCode.HASH_MISMATCH


class OffsetMismatchError(ServerError):
    code = ErrorCode.OFFSET_MISMATCH


class TooLargeError(ServerError):
    code = ErrorCode.TOO_LARGE


ERROR_CLASSES: dict[ErrorCode, type[ServerError]] = {
    ErrorCode.MALFORMED_FRAME: MalformedFrameError,
    ErrorCode.FRAME_TOO_LARGE: FrameTooLargeError,
    ErrorCode.UNKNOWN_MESSAGE: UnknownMessageError,
    ErrorCode.UNSUPPORTED_VERSION: UnsupportedVersionError,
    ErrorCode.HANDSHAKE_REQUIRED: HandshakeRequiredError,
    ErrorCode.TIMEOUT: IdleTimeoutError,
    ErrorCode.LIMIT_EXCEEDED: LimitExceededError,
    ErrorCode.NOT_IMPLEMENTED: NotImplementedByServerError,
    ErrorCode.INVALID_ARGUMENT: InvalidArgumentError,
    ErrorCode.NOT_LOGGED_IN: NotLoggedInError,
    ErrorCode.ALREADY_LOGGED_IN: AlreadyLoggedInError,
    ErrorCode.RATE_LIMITED: RateLimitedError,
    ErrorCode.INTERNAL_ERROR: InternalServerError,
    ErrorCode.UNAVAILABLE: ServiceUnavailableError,
    ErrorCode.NOT_A_REQUEST: NotARequestError,
    ErrorCode.AUTH_FAILED: AuthFailedError,
    ErrorCode.TOTP_REQUIRED: TotpRequiredError,
    ErrorCode.TOTP_INVALID: TotpInvalidError,
    ErrorCode.TOKEN_INVALID: TokenInvalidError,
    ErrorCode.CODE_INVALID: CodeInvalidError,
    ErrorCode.USERNAME_TAKEN: UsernameTakenError,
    ErrorCode.EMAIL_TAKEN: EmailTakenError,
    ErrorCode.INVALID_USERNAME: InvalidUsernameError,
    ErrorCode.INVALID_EMAIL: InvalidEmailError,
    ErrorCode.WEAK_PASSWORD: WeakPasswordError,
    ErrorCode.TOTP_STATE: TotpStateError,
    ErrorCode.USER_NOT_FOUND: UserNotFoundError,
    ErrorCode.ALREADY_FRIENDS: AlreadyFriendsError,
    ErrorCode.CANNOT_FRIEND_SELF: CannotFriendSelfError,
    ErrorCode.FRIEND_REQUEST_NOT_FOUND: FriendRequestNotFoundError,
    ErrorCode.NOT_FRIENDS: NotFriendsError,
    ErrorCode.THREAD_NOT_FOUND: ThreadNotFoundError,
    ErrorCode.PERMISSION_DENIED: PermissionDeniedError,
    ErrorCode.GROUP_FULL: GroupFullError,
    ErrorCode.BLOB_NOT_FOUND: BlobNotFoundError,
    ErrorCode.HASH_MISMATCH: HashMismatchError,
    ErrorCode.OFFSET_MISMATCH: OffsetMismatchError,
    ErrorCode.TOO_LARGE: TooLargeError,
}


def error_from_frame(frame: Error) -> ServerError:
    """The exception for an ERROR frame."""
    cls = ERROR_CLASSES.get(frame.code, ServerError)
    return cls(frame.message, frame.retry_after_ms)
