"""Who is computing which cell: the owner of a lease in the results database, and its heartbeat.

A process claims the cells (run, resolution) it is about to compute with a row in the store's ``leases``
table (`ResultStore.claim`) naming its host, pid and a random token, and keeps the row fresh from a
background thread (`Heartbeat`). Another process skips a cell whose lease is live and computes the rest.
A lease is dead, and the cell free to claim, when its heartbeat is older than `LEASE_TTL_S` (its owner
hung, lost its node or its disk), or at once when its owner ran on this host and that pid no longer
exists (a run killed with SIGKILL is retried without waiting). Host names tell machines apart, so two
containers that share a database need different host names.

Must not import torch or the store (the store imports this module).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

LEASE_TTL_S = 60.0  # a heartbeat older than this frees the cell
HEARTBEAT_S = 10.0  # how often an owner refreshes its leases


@dataclass(frozen=True)
class Owner:
    """One process that computes cells: its host, pid, and a token unique to this evaluation."""

    host: str
    pid: int
    token: str

    @classmethod
    def me(cls) -> Owner:
        return cls(socket.gethostname(), os.getpid(), secrets.token_hex(8))

    def describe(self) -> str:
        return f"{self.host} pid {self.pid}"


def pid_exists(pid: int) -> bool:
    """Whether a process with this pid exists on this host (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def is_live(host: str, pid: int, heartbeat: float, now: float | None = None) -> bool:
    """Whether a lease written by (host, pid) with this last heartbeat (Unix seconds) still holds."""
    now = time.time() if now is None else now
    if now - heartbeat > LEASE_TTL_S:
        return False
    return host != socket.gethostname() or pid_exists(pid)


class Heartbeat:
    """Calls `beat()` every `interval` seconds on a daemon thread until the context ends.

    `beat` runs on that thread, so it must open its own database connection, and `done` (run there too,
    once, at the end) closes it. An error in `beat` is kept, not raised: a missed beat only shortens the
    lease, and the owner learns of a lost lease when it writes.
    """

    def __init__(self, beat: Callable[[], None], interval: float | None = None,
                 done: Callable[[], None] = lambda: None):
        self.beat, self.done, self.interval = beat, done, HEARTBEAT_S if interval is None else interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lr0fm-heartbeat", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception as error:  # noqa: BLE001 - see the class docstring
                self.error = error
        with contextlib.suppress(Exception):
            self.done()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


__all__ = ["HEARTBEAT_S", "Heartbeat", "LEASE_TTL_S", "Owner", "is_live", "pid_exists"]
