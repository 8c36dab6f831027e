"""Turns annotated classes into typed wire messages.

A message is declared once, as a class whose fields name their wire type:

    @message(0x0003, Kind.REQUEST, reply=Pong)
    class Ping(Message):
        "Keeps the connection alive."
        request_id: int = field(U32, "chosen by the client, echoed in the reply")

The decorator makes it a slotted dataclass, builds its `construct` Struct,
compiles it once, generates the converter from parsed containers to instances,
generates the fast struct-based encoder and decoder (`fastcodec`), and
registers the id.  The codec, the spec in docs/protocol.md and the tests all
read these definitions, so there is nothing else to keep in step.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from enum import Enum
from typing import Any, ClassVar

from construct import Container, Struct

from . import fastcodec
from .wire import WireError, WireType


class Access(Enum):
    """The connection states a request is allowed in, after the handshake."""

    ANY = "any"  # logged in or not
    GUEST = "guest"  # only before login
    USER = "user"  # only when logged in


class Kind(Enum):
    """Who sends a message: requests go client->server, the rest server->client."""

    REQUEST = "request"
    RESPONSE = "response"
    PUSH = "push"


def field(wire: WireType, doc: str = "", default: Any = dataclasses.MISSING,
          default_factory: Any = dataclasses.MISSING) -> Any:
    """Declare a field with its wire type and a line for the spec."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"wire": wire, "doc": doc})


_CONTEXT = Container(_params={}, _root=None, _parsing=True, _building=False, _sizing=False,
                     _subcons=None, _io=None, _index=None)


class Wire:
    """Base of records and messages: item access lets compiled builders read fields."""

    __slots__ = ()
    STRUCT: ClassVar[Struct]
    FIELDS: ClassVar[tuple[dataclasses.Field, ...]]
    FIELD_NAMES: ClassVar[tuple[str, ...]]
    SIZE: ClassVar[int | None]
    from_container: ClassVar[Callable[[Any], Any]]
    validate: ClassVar[Callable[[Any], None] | None]

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)

    def keys(self) -> tuple[str, ...]:
        return self.FIELD_NAMES

    def __iter__(self):
        """(name, value) pairs, which is what construct's Container.update reads."""
        for name in self.FIELD_NAMES:
            yield name, getattr(self, name)


class Message(Wire):
    """A top-level message: one msg_id, one body layout."""

    __slots__ = ()
    MSG_ID: ClassVar[int]
    KIND: ClassVar[Kind]
    REPLY: ClassVar[type[Message] | None]
    ACCESS: ClassVar[Access | None]

    def encode_frame(self) -> bytes:  # replaced per class by the generated encoder
        """The whole frame, header included."""
        raise NotImplementedError

    def encode_body(self) -> bytes:
        """The body bytes, through the generated encoder."""
        return self.encode_frame()[6:]

    @classmethod
    def decode_body(cls, body: bytes) -> Message:  # replaced per class by the generated decoder
        """Parse a body; raises on anything malformed."""
        raise NotImplementedError

    def encode_body_compiled(self) -> bytes:
        """The body bytes, through construct's compiled builder."""
        out = io.BytesIO()
        if self.validate is not None:
            self.validate(self)
        try:
            self._build(self, out, _CONTEXT)
        except WireError:
            raise
        except Exception as e:  # construct raises many types for a bad value
            raise WireError(f"cannot encode {type(self).__name__}: {e}") from e
        return out.getvalue()

    @classmethod
    def decode_body_compiled(cls, body: bytes) -> Message:
        """Parse a body with construct's compiled parser; raises on anything malformed."""
        stream = io.BytesIO(body)
        parsed = cls._parse(stream, _CONTEXT)
        if stream.tell() != len(body):
            raise WireError(f"{len(body) - stream.tell()} trailing bytes after {cls.__name__}")
        return cls.from_container(parsed)

    @classmethod
    def decode_body_plain(cls, body: bytes) -> Message:
        """The same with construct's interpreted parser, for comparison and tests."""
        stream = io.BytesIO(body)
        parsed = cls.STRUCT.parse_stream(stream)
        if stream.tell() != len(body):
            raise WireError(f"{len(body) - stream.tell()} trailing bytes after {cls.__name__}")
        return cls.from_container(parsed)

    def encode_body_plain(self) -> bytes:
        if self.validate is not None:
            self.validate(self)
        return self.STRUCT.build(self)


REGISTRY: dict[int, type[Message]] = {}


def _converter(cls: type) -> Callable[[Any], Any]:
    """Generate `lambda c: cls(conv(c['a']), c['b'], ...)` for the class's fields."""
    namespace: dict[str, Any] = {"cls": cls}
    args = []
    for f in cls.FIELDS:
        wire: WireType = f.metadata["wire"]
        if wire.convert is None:
            args.append(f"c[{f.name!r}]")
        else:
            namespace[f"conv_{f.name}"] = wire.convert
            args.append(f"conv_{f.name}(c[{f.name!r}])")
    source = f"def from_container(c):\n    return cls({', '.join(args)})\n"
    exec(source, namespace)  # noqa: S102 - code built from our own field names
    return namespace["from_container"]


def _validator(cls: type) -> Callable[[Any], None] | None:
    """A function running every field's pre-encoding check, or None if none has one."""
    checks = [(f.name, f.metadata["wire"].check) for f in cls.FIELDS if f.metadata["wire"].check]
    if not checks:
        return None

    def validate(instance: Any) -> None:
        for name, check in checks:
            check(getattr(instance, name))

    return validate


def _finish(cls: type) -> type:
    cls = dataclasses.dataclass(slots=True)(cls)
    fields = tuple(dataclasses.fields(cls))
    for f in fields:
        if "wire" not in f.metadata:
            raise TypeError(f"{cls.__name__}.{f.name} has no wire type")
    cls.FIELDS = fields
    cls.FIELD_NAMES = tuple(f.name for f in fields)
    cls.STRUCT = Struct(*[f.name / f.metadata["wire"].construct for f in fields])
    sizes = [f.metadata["wire"].size for f in fields]
    cls.SIZE = None if None in sizes else sum(sizes)
    cls.from_container = staticmethod(_converter(cls))
    validate = _validator(cls)
    cls.validate = staticmethod(validate) if validate else None
    return cls


def record(cls: type) -> type:
    """A structure used inside messages (list items, nested values)."""
    return _finish(cls)


def message(
    msg_id: int, kind: Kind, reply: type[Message] | None = None, access: Access = Access.USER
) -> Callable[[type], type]:
    """Register a message class under `msg_id`; requests say in which state they are allowed."""

    def decorate(cls: type) -> type:
        if msg_id in REGISTRY:
            raise ValueError(f"msg_id 0x{msg_id:04x} is used twice")
        if not 0 < msg_id <= 0xFFFF:
            raise ValueError("msg_id must be a u16 other than 0")
        cls = _finish(cls)
        names = cls.FIELD_NAMES
        if kind is not Kind.PUSH and names[:1] != ("request_id",):
            raise TypeError(f"{cls.__name__}: requests and responses start with request_id")
        cls.MSG_ID = msg_id
        cls.KIND = kind
        cls.REPLY = reply
        cls.ACCESS = access if kind is Kind.REQUEST else None
        compiled = cls.STRUCT.compile()
        cls._parse = staticmethod(compiled.parsefunc)
        cls._build = staticmethod(compiled.buildfunc)
        cls.encode_frame = fastcodec.frame_encoder(cls)
        cls.decode_body = staticmethod(fastcodec.body_decoder(cls))
        REGISTRY[msg_id] = cls
        return cls

    return decorate
