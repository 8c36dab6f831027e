"""The client library's exceptions: one class of its own for every protocol error code."""

from __future__ import annotations

from tinychat.client import errors
from tinychat.protocol import Error, ErrorCode


def test_every_error_code_maps_to_its_own_class():
    for code in ErrorCode:
        cls = errors.ERROR_CLASSES.get(code)
        assert cls is not None, f"tinychat.client.errors has no class for {code.name} ({code.value})"
        assert issubclass(cls, errors.ServerError) and cls is not errors.ServerError
        assert cls.code is code, f"{cls.__name__}.code is {cls.code!r}, not {code!r}"
        raised = errors.error_from_frame(Error(request_id=1, code=code, retry_after_ms=0, message="why"))
        assert type(raised) is cls and raised.code is code and raised.message == "why"
    classes = list(errors.ERROR_CLASSES.values())
    assert len(set(classes)) == len(classes) == len(ErrorCode)  # no class shared by two codes
    defined = {cls for cls in vars(errors).values()
               if isinstance(cls, type) and issubclass(cls, errors.ServerError) and cls is not errors.ServerError}
    assert defined == set(classes)  # and none left out of the table


def test_limit_exceeded_has_its_class():
    error = errors.error_from_frame(Error(request_id=0, code=ErrorCode.LIMIT_EXCEEDED, retry_after_ms=0,
                                          message="at most 2 connections"))
    assert isinstance(error, errors.LimitExceededError) and error.code.closes_connection
