"""``POST /v1/files``: a multipart upload streamed to storage, never held in memory.

The body is parsed in a worker thread by python-multipart's push parser; the thread pulls the request's
chunks from the event loop one at a time (``pull``), so reading, parsing and writing proceed at the
pace of the disk and a refusal (bad purpose, over the size cap) stops reading the body at once. The SDK
sends ``purpose`` before ``file``, so the file part goes straight into ``Service.store_upload``; a client
that sends the file first has it spooled to a temporary file (on disk, with the same cap) until the
purpose is known.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, TypeVar

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from scheduler.errors import InvalidRequest, TooLarge
from scheduler.records import FileRecord
from scheduler.service import Service, expiry_seconds

T = TypeVar("T")

FORM_OVERHEAD = 64 * 1024  # boundaries, part headers and the small text fields around the file
FIELD_CAP = 64 * 1024  # a text field (purpose, expires_after[...]) is a few bytes
CHUNK = 1024 * 1024
DEFAULT_FILENAME = "upload.jsonl"

Pull = Callable[[], "bytes | None"]  # the next chunk of the request body; None at its end


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None


def boundary_of(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidRequest("Upload files as multipart/form-data with a 'file' part and a 'purpose' field.",
                             code="invalid_content_type")
    return boundary


def body_puller(request: Request) -> Callable[[], bytes | None]:
    """A function a worker thread calls for the request body's next chunk (None at the end): the body is
    parsed and stored off the event loop, one chunk at a time, never held whole."""
    stream = request.stream()

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    return lambda: anyio.from_thread.run(next_chunk)


async def in_thread(work: Callable[[], T]) -> T:
    """Run an upload's ``work`` in a worker thread; a client that hangs up mid-body is a clear 400."""
    try:
        return await anyio.to_thread.run_sync(work)
    except ClientDisconnect as exc:
        raise InvalidRequest("The client disconnected before the upload was complete.") from exc


def check_declared_length(content_length: str | None, max_file_bytes: int, overhead: int = FORM_OVERHEAD) -> None:
    """Refuse from the header alone when the body cannot fit, before reading any of it; ``overhead`` is
    what may come around the file (a form's boundaries and fields; 0 for raw bytes)."""
    if content_length is None:
        return
    if not content_length.isdigit():
        raise InvalidRequest("Content-Length must be a number of bytes.", code="invalid_content_length")
    if int(content_length) > max_file_bytes + overhead:
        raise TooLarge(f"The file is larger than the limit of {max_file_bytes} bytes.", param="file")


class MultipartReader:
    """Turns the push parser's callbacks into a pull API: ``next_part()``, then ``data()`` of that part."""

    def __init__(self, boundary: bytes, pull: Pull) -> None:
        self._pull = pull
        self._events: deque[tuple[str, object]] = deque()
        self._headers: list[tuple[bytes, bytes]] = []
        self._field = bytearray()
        self._value = bytearray()
        self._ended = False
        self._eof = False
        try:
            self._parser = MultipartParser(boundary, callbacks={
                "on_part_begin": self._headers.clear,
                "on_header_field": lambda d, s, e: self._field.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": lambda d, s, e: self._events.append(("data", bytes(d[s:e]))),
                "on_part_end": lambda: self._events.append(("part_end", None)),
                "on_end": self._end,
            })
        except (MultipartParseError, ValueError) as exc:
            raise InvalidRequest(f"Malformed multipart boundary: {exc}", code="invalid_multipart") from None

    def _header_end(self) -> None:
        self._headers.append((bytes(self._field).lower(), bytes(self._value)))
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        disposition = dict(self._headers).get(b"content-disposition")
        _, options = parse_options_header(disposition)
        name = options.get(b"name")
        if name is None:
            raise InvalidRequest("A multipart part has no name.", code="invalid_multipart")
        filename = options.get(b"filename")
        self._events.append(("part", Part(name.decode("utf-8", "replace"),
                                          None if filename is None else filename.decode("utf-8", "replace"))))

    def _end(self) -> None:
        self._ended = True
        self._events.append(("end", None))

    def _next_event(self) -> tuple[str, object]:
        while not self._events:
            if self._eof:
                return ("eof", None)
            chunk = self._pull()
            if chunk is None:
                self._eof = True
                if not self._ended:
                    raise InvalidRequest("The multipart body ended before its closing boundary.",
                                         code="invalid_multipart")
            elif chunk and not self._ended:
                try:
                    self._parser.write(chunk)
                except MultipartParseError as exc:
                    raise InvalidRequest(f"Malformed multipart body: {exc}", code="invalid_multipart") from None
        return self._events.popleft()

    def next_part(self) -> Part | None:
        """The next part's headers (skipping what is left of the current one); None after the last."""
        while True:
            kind, value = self._next_event()
            if kind == "part":
                assert isinstance(value, Part)
                return value
            if kind in ("end", "eof"):
                return None

    def data(self) -> Iterator[bytes]:
        """The current part's bytes, as they arrive."""
        while True:
            kind, value = self._next_event()
            if kind == "data":
                assert isinstance(value, bytes)
                yield value
            elif kind == "part_end":
                return
            else:
                raise InvalidRequest("The multipart body ended inside a part.", code="invalid_multipart")


def clean_filename(name: str | None) -> str:
    """The base name only (no client paths), printable, at most 255 characters."""
    base = PurePosixPath((name or "").replace("\\", "/")).name
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[:255] or DEFAULT_FILENAME


def read_field(chunks: Iterator[bytes], name: str) -> str:
    """A text field of a form, capped and UTF-8."""
    value = bytearray()
    for chunk in chunks:
        value += chunk
        if len(value) > FIELD_CAP:
            raise InvalidRequest(f"The form field {name!r} is too long.", param=name)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest(f"The form field {name!r} is not UTF-8.", param=name) from None


def _spool(chunks: Iterator[bytes], cap: int) -> IO[bytes]:
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the caller, which closes it
    size = 0
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > cap:
                raise TooLarge(f"The file is larger than the limit of {cap} bytes.", param="file")
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


def _expiry(fields: dict[str, str]) -> int | None:
    return expiry_seconds(fields.get("expires_after[anchor]"), fields.get("expires_after[seconds]"), "expires_after")


def receive_upload(service: Service, tenant: str, reader: MultipartReader) -> FileRecord:
    """Read the form, storing its ``file`` part; on any later error the stored file is removed again."""
    fields: dict[str, str] = {}
    record: FileRecord | None = None
    spool: IO[bytes] | None = None
    filename = DEFAULT_FILENAME
    try:
        while (part := reader.next_part()) is not None:
            if part.name != "file":
                fields[part.name] = read_field(reader.data(), part.name)
                continue
            if record is not None or spool is not None:
                raise InvalidRequest("Send one file per request.", param="file")
            filename = clean_filename(part.filename)
            if "purpose" in fields:  # a bad expires_after sent first is refused before the bytes are read
                record = service.store_upload(tenant, filename, fields["purpose"], reader.data(),
                                              expires_in=_expiry(fields))
            else:
                spool = _spool(reader.data(), service.settings.max_file_bytes)
        if record is None:
            if spool is None:
                raise InvalidRequest("Missing the 'file' part of the form.", param="file",
                                     code="missing_required_parameter")
            if "purpose" not in fields:
                raise InvalidRequest("Missing the 'purpose' field of the form; use 'batch'.", param="purpose",
                                     code="missing_required_parameter")
            return service.store_upload(tenant, filename, fields["purpose"], iter(lambda: spool.read(CHUNK), b""),
                                        expires_in=_expiry(fields))
        # Streamed before the form ended: an expires_after sent after the file part applies now.
        seconds = _expiry(fields)
        if seconds is not None and record.expires_at is None:
            record = service.records.set_file_expiry(record, record.created_at + seconds)
        return record
    except BaseException:
        if record is not None:
            service.delete_file(tenant, record.id)
        raise
    finally:
        if spool is not None:
            spool.close()
