"""The ``make_stack`` fixture; the stack itself and the helpers are in ``harness.py``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import Stack, start_stack

from scheduler.redis_server import EmbeddedRedis


@pytest.fixture
def make_stack(tmp_path: Path, redis_server: EmbeddedRedis, tiny_model_dir: Path) -> Iterator[Callable[..., Stack]]:
    """Start stacks with settings overrides; each is stopped after the test."""
    started: list[Stack] = []

    def make(**kwargs: Any) -> Stack:
        stack = start_stack(tmp_path / f"stack-{len(started)}", redis_server, tiny_model_dir, **kwargs)
        started.append(stack)
        return stack

    yield make
    for stack in started:
        stack.stop()
