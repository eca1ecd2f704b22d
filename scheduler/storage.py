"""File contents through fsspec: uploads, micro-batch payloads, results, output files.

``TOKENBATCH_STORAGE_URL`` names the root (a local folder by default, ``s3://`` or any fsspec URL across
hosts). Writes go to a temporary name and are moved into place, so a reader (or a redelivered task)
never sees half a file, and writing the same path twice leaves one whole copy.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import IO, Any

from fsspec.core import url_to_fs

CHUNK = 1024 * 1024


def is_local(fs: Any) -> bool:
    """An fsspec filesystem on this machine's own disk."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return bool({"file", "local"} & set(protocols))


class Storage:
    def __init__(self, url: str) -> None:
        self.fs, self.root = url_to_fs(url)
        self.root = self.root.rstrip("/")
        self.fs.makedirs(self.root, exist_ok=True)
        self.local = is_local(self.fs)

    def full(self, path: str) -> str:
        return f"{self.root}/{path}"

    @contextlib.contextmanager
    def writer(self, path: str) -> Iterator[IO[bytes]]:
        """A binary file that appears at ``path`` only when the block exits without error."""
        final = self.full(path)
        tmp = f"{final}.tmp-{secrets.token_hex(6)}"
        parent = final.rsplit("/", 1)[0]
        if self.local:
            self.fs.makedirs(parent, exist_ok=True)
        try:
            with self.fs.open(tmp, "wb") as fh:
                yield fh
            self.fs.mv(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError, OSError):
                self.fs.rm(tmp)
            raise

    def open(self, path: str, mode: str = "rb") -> Any:
        return self.fs.open(self.full(path), mode)

    def iter_bytes(self, path: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The bytes [start, end) of a file, in chunks (for streamed downloads and Range)."""
        with self.open(path) as fh:
            fh.seek(start)
            left = None if end is None else end - start
            while left is None or left > 0:
                chunk = fh.read(CHUNK if left is None else min(CHUNK, left))
                if not chunk:
                    return
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def size(self, path: str) -> int:
        return int(self.fs.size(self.full(path)))

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(self.full(path)))

    def delete(self, path: str, recursive: bool = False) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.full(path), recursive=recursive)
