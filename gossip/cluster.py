"""Drive several JSON-lines child processes (``gossip.node`` or benchmark children).

Used by the multi-process test and ``bench/gossip.py``: start N children, read
their events with timeouts (one reader thread per child, so a silent child never
blocks the others), write lines to all, and always kill what is left on exit.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

from gossip.errors import GossipError

__all__ = ["Cluster", "ClusterError"]


class ClusterError(GossipError):
    """A child died, printed something that is not JSON, or was too slow."""


class Cluster:
    """Child processes speaking JSON lines; use as a context manager."""

    def __init__(self, commands: Sequence[Sequence[str]], *, env: dict[str, str] | None = None) -> None:
        self.commands = [list(c) for c in commands]
        self.env = env
        self.procs: list[subprocess.Popen[str]] = []
        self._queues: list[queue.Queue[str | None]] = []
        self._stderr: list[list[str]] = []

    def __enter__(self) -> Cluster:
        for cmd in self.commands:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=self.env)
            q: queue.Queue[str | None] = queue.Queue()
            err: list[str] = []
            threading.Thread(target=self._pump, args=(proc.stdout, q), daemon=True).start()
            threading.Thread(target=self._drain, args=(proc.stderr, err), daemon=True).start()
            self.procs.append(proc)
            self._queues.append(q)
            self._stderr.append(err)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _pump(stream: Any, q: queue.Queue[str | None]) -> None:
        for line in stream:
            q.put(line)
        q.put(None)

    @staticmethod
    def _drain(stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)
            del sink[:-200]  # keep the tail only

    def expect(self, i: int, event: str, timeout: float) -> dict[str, Any]:
        """The next JSON object of child ``i``; ClusterError unless its event is ``event``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queues[i].get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise ClusterError(f"child {i}: no {event!r} within {timeout} s; stderr tail:\n"
                                   + "".join(self._stderr[i][-20:])) from None
            if line is None:
                raise ClusterError(f"child {i} exited (code {self.procs[i].poll()}) before "
                                   f"{event!r}; stderr tail:\n" + "".join(self._stderr[i][-20:]))
            if not line.startswith("{"):
                continue  # stray prints of libraries
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ClusterError(f"child {i} printed bad JSON: {line!r}") from exc
            if obj.get("event") != event:
                raise ClusterError(f"child {i}: expected {event!r}, got {obj!r}")
            return obj

    def expect_all(self, event: str, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        return [self.expect(i, event, max(0.0, deadline - time.monotonic()))
                for i in range(len(self.procs))]

    def send(self, i: int, line: str) -> None:
        stdin = self.procs[i].stdin
        assert stdin is not None
        stdin.write(line + "\n")
        stdin.flush()

    def send_all(self, line: str) -> None:
        for i in range(len(self.procs)):
            self.send(i, line)

    def wait(self, timeout: float) -> list[int]:
        """Wait for every child to exit; their exit codes."""
        deadline = time.monotonic() + timeout
        return [p.wait(timeout=max(0.1, deadline - time.monotonic())) for p in self.procs]

    def close(self) -> None:
        """Kill every child still running (always called on exit)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
