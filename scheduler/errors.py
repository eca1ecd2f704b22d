"""One error tree. Each error knows its HTTP status and OpenAI ``type``/``code``, so the API renders
``{"error": {"message", "type", "param", "code"}}`` from it and every other surface (the Celery door,
the CLI) shows the same message."""

from __future__ import annotations

from typing import Any


class TokenbatchError(Exception):
    status = 500
    type = "server_error"
    code: str | None = None

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        # All three in ``args``: Celery's JSON result carries only ``args``, and a caller of the Celery door
        # that imports nothing of ours rebuilds the error from them: ``exc.args == (message, param, code)``.
        super().__init__(message, self.param, self.code)

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class InvalidRequest(TokenbatchError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class Unauthorized(TokenbatchError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class Forbidden(TokenbatchError):
    status = 403
    type = "permission_error"
    code = "forbidden"


class NotFound(TokenbatchError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class Conflict(TokenbatchError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class TooLarge(TokenbatchError):
    status = 413
    type = "invalid_request_error"
    code = "file_too_large"


def describe(errors: list[Any]) -> InvalidRequest:
    """The first of pydantic's errors as an OpenAI-style 400 naming the parameter."""
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ())]
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    param = loc[0] if loc else None  # the top-level parameter, as OpenAI names it; the message has the path
    where = ".".join(loc)[:200]
    kind = first.get("type", "")
    if kind in ("json_invalid", "json_type"):
        return InvalidRequest("We could not parse the JSON body of your request: send a JSON object.",
                              code="invalid_json")
    if kind == "missing":
        return InvalidRequest(f"Missing required parameter: {where!r}.", param=param, code="missing_required_parameter")
    msg = first.get("msg", "invalid value")
    return InvalidRequest(f"Invalid value for {where!r}: {msg}." if where else f"Invalid request: {msg}.",
                          param=param, code="invalid_value")
