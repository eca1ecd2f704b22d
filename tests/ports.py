"""Ports for the servers tests start, drawn below the kernel's ephemeral range. A port taken from that range
(bind to 0) can be grabbed by any outgoing connection, or another bind to 0, before the server binds it;
that made "the next worker takes the next port" flaky in CI."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_rng = random.Random()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def quiet_ports(n: int = 1) -> int:
    """A base port whose ``n`` consecutive ports are free now, outside the ephemeral range: below it, or
    above it on hosts whose range starts low."""
    low, high = (int(x) for x in _RANGE.read_text().split()) if _RANGE.exists() else (32768, 60999)
    first, last = (20000, low - n) if low - n > 21000 else (high + 1, 65536 - n)
    for _ in range(200):
        base = _rng.randrange(first, last)
        if all(_bindable(base + i) for i in range(n)):
            return base
    raise RuntimeError(f"no {n} consecutive free ports in {first}-{last}")
