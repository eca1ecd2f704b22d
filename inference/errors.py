"""One error tree for inference: callers catch ``InferenceError`` or a specific subclass.

A ``RequestError`` belongs to one request and becomes a line in the batch's error file; the others are
facts about the deployment (a model that is not there) and stop the worker from starting.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base of every error this package raises on purpose."""


class ModelNotAvailable(InferenceError):
    """The weights or tokenizer are not on this machine; the message names what to fetch and where."""


class ModelConfigError(InferenceError):
    """The models file is malformed (unknown key, wrong type, duplicate id)."""


class RequestError(InferenceError):
    """One request cannot be served; ``code`` and the message go to the error file as they are."""

    code = "invalid_request"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def as_error(self) -> dict[str, str]:
        """The ``{"code", "message"}`` shape of ``Outcome.error``."""
        return {"code": self.code, "message": self.message}


class ParamError(RequestError):
    """A sampling parameter or message is of the wrong type, out of range, or not supported."""

    code = "invalid_parameter"


class ContextLengthExceeded(RequestError):
    """Prompt plus completion budget do not fit the model's context window."""

    code = "context_length_exceeded"
