"""The loopback host every test service listens on, and free ports on it."""

from __future__ import annotations

import contextlib
import socket

HOST = "127.0.0.1"


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on loopback right now (all held open while picking, then released)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(n)]
        for probe in probes:
            probe.bind((HOST, 0))
        return [int(p.getsockname()[1]) for p in probes]


def free_port() -> int:
    """A TCP port free on loopback right now."""
    return free_ports(1)[0]
