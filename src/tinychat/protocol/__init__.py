"""The TinyChat wire protocol: message definitions, codec and error codes.

Everything a client or server needs to speak the protocol is importable from
here; docs/protocol.md is the same content for readers of other languages.
"""

from .codec import DEFAULT_MAX_FRAME, HEADER, HEADER_SIZE, FrameDecoder, decode_body, decode_frame, encode
from .errors import ERROR_MEANINGS, ErrorCode, ProtocolError
from .messages import *  # noqa: F403 - the message classes are the API
from .messages import __all__ as _message_names
from .schema import REGISTRY, Access, Kind, Message
from .wire import WireError

__all__ = [
    "DEFAULT_MAX_FRAME", "HEADER", "HEADER_SIZE", "FrameDecoder", "decode_body", "decode_frame",
    "encode", "ERROR_MEANINGS", "ErrorCode", "ProtocolError", "REGISTRY", "Kind", "Message",
    "WireError", "Access", *_message_names,
]
