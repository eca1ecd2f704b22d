"""A small Python client for internal services: upload, create, wait with progress, download.

    from scheduler.client import Client
    c = Client("http://127.0.0.1:8000", "KEY")
    batch = c.submit("requests.jsonl")
    final = c.wait(batch["id"], on_progress=lambda b: print(b["request_counts"]))
    data = c.content(final["output_file_id"])
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from scheduler.progress import TERMINAL, of_json, track

Batch = dict[str, Any]


class ClientError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        super().__init__(f"{status}: {err.get('message') or body}")
        self.status = status
        self.code = err.get("code")


class Client:
    def __init__(self, base_url: str, api_key: str, timeout: float = 60.0) -> None:
        base = base_url.rstrip("/")
        self.http = httpx.Client(base_url=base if base.endswith("/v1") else base + "/v1", timeout=timeout,
                                 headers={"Authorization": f"Bearer {api_key}"})

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = response.text
            raise ClientError(response.status_code, body)
        return response.json()

    def upload(self, path: str | Path) -> dict[str, Any]:
        path = Path(path)
        with path.open("rb") as fh:
            return self._json(self.http.post("/files", data={"purpose": "batch"},
                                             files={"file": (path.name, fh, "application/octet-stream")}))

    def create(self, input_file_id: str, completion_window: str = "24h",
               metadata: dict[str, str] | None = None) -> Batch:
        body = {"input_file_id": input_file_id, "endpoint": "/v1/chat/completions",
                "completion_window": completion_window, "metadata": metadata}
        return self._json(self.http.post("/batches", json=body))

    def submit(self, path: str | Path, **kwargs: Any) -> Batch:
        return self.create(self.upload(path)["id"], **kwargs)

    def retrieve(self, batch_id: str) -> Batch:
        return self._json(self.http.get(f"/batches/{batch_id}"))

    def cancel(self, batch_id: str) -> Batch:
        return self._json(self.http.post(f"/batches/{batch_id}/cancel"))

    def wait(self, batch_id: str, console: Console | None = None,
             on_progress: Callable[[Batch], None] | None = None, interval: float = 1.0) -> Batch:
        """Poll until terminal; draws a progress bar on ``console``, or calls ``on_progress`` each poll."""
        if console is not None:
            return track(lambda: self.retrieve(batch_id), of_json, console, interval)
        while True:
            batch = self.retrieve(batch_id)
            if on_progress:
                on_progress(batch)
            if (batch.get("stage") or batch["status"]) in TERMINAL:
                return batch
            time.sleep(interval)

    def content(self, file_id: str) -> bytes:
        response = self.http.get(f"/files/{file_id}/content")
        if response.status_code >= 400:
            self._json(response)
        return response.content
