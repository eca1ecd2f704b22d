"""The whole stack on one machine, as systemd would run it: each part a child process, restarted when it
dies (with a back-off), all stopped on Ctrl-C / SIGTERM. Used by ``tokenbatch up`` and ``tokenbatch run``.

The parts are the same commands an operator runs one by one (``tokenbatch api``, ``worker``,
``infer-worker --model M``, ``beat``); the embedded Redis is started first and stopped last.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from scheduler.redis_server import EmbeddedRedis
from scheduler.settings import Settings

log = logging.getLogger("tokenbatch.up")


@dataclass
class Part:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started: float = 0.0


def cli(*args: str) -> list[str]:
    """argv of a tokenbatch sub-command, run with this interpreter."""
    return [sys.executable, "-m", "scheduler.cli", *args]


def stack_parts(settings: Settings, models: list[str], api: bool = True, beat: bool = True) -> list[Part]:
    parts = []
    if api:
        parts.append(Part("api", cli("api")))
    parts.append(Part("worker", cli("worker")))
    parts += [Part(f"infer-{m}", cli("infer-worker", "--model", m)) for m in models]
    if beat:
        parts.append(Part("beat", cli("beat")))
    return parts


class Supervisor:
    def __init__(self, settings: Settings, parts: list[Part], log_dir: Path | None = None) -> None:
        self.settings = settings
        self.parts = parts
        self.log_dir = log_dir or settings.data_dir / "logs"
        self.redis: EmbeddedRedis | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def start(self) -> Settings:
        """Start Redis (unless a URL is set) and every part; returns the settings the parts run with."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.settings.redis_url:
            self.redis = EmbeddedRedis(self.settings.data_dir / "redis").start()
            self.settings = self.settings.replace(redis_url=self.redis.url)
        for part in self.parts:
            self._spawn(part)
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="tokenbatch-supervisor")
        self._watcher.start()
        return self.settings

    def _spawn(self, part: Part) -> None:
        env = {**os.environ, **self.settings.as_env(), **part.env}
        out = open(self.log_dir / f"{part.name}.log", "ab")  # noqa: SIM115 - the child owns it
        part.process = subprocess.Popen(part.argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        part.started = time.monotonic()
        log.info("started %s (pid %d)", part.name, part.process.pid)

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for part in self.parts:
                if part.process is None or part.process.poll() is None:
                    continue
                code = part.process.returncode
                # Back off when a part keeps dying young, as systemd's RestartSec would.
                delay = min(30.0, 2.0 ** min(part.restarts, 5)) if time.monotonic() - part.started < 10 else 0.5
                log.warning("%s exited with %s; restarting in %.1fs", part.name, code, delay)
                if self._stopping.wait(delay):
                    return
                part.restarts += 1
                self._spawn(part)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every part (Celery's warm shutdown: a running micro-batch finishes or is requeued),
        SIGKILL what lingers, then stop Redis."""
        self._stopping.set()
        if self._watcher is not None:  # a restart it was making is finished, so its process is signalled too
            self._watcher.join(timeout=10)
        for part in self.parts:
            if part.process and part.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(part.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for part in self.parts:
            if part.process is None:
                continue
            try:
                part.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(part.process.pid, signal.SIGKILL)
                part.process.wait()
        if self.redis:
            self.redis.stop()

    def wait(self) -> None:
        """Block until SIGINT or SIGTERM."""
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(1.0):
            pass
