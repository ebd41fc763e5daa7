"""Online adaptation in a child process, driven by a thread of the pipeline.

Why a process and not only a thread: the adapter's torch work (a Transformer forward and
backward in many small ops) holds the GIL for most of its time; in a thread of the pipeline's
process, the inference thread waited for the GIL at every hop, and lowering the thread's
priority made it worse (the low-priority thread was descheduled while holding the GIL).
Measured on 2 cores: p99 latency 26-31 ms with the adapter in a thread, against 13 ms without
adaptation (``benchmarks/bench_latency.py``). In its own process the torch work shares only
the cores, at the niceness we give it, and the pipeline's process never imports torch.

Protocol over a socket pair between our own two processes, as pickled tuples
(``multiprocessing.connection.Connection``; the child is ``python -m
emgstream.pipeline._adaptation_child FD``):

- parent -> child: ``("start", model, options, swap_seconds)`` first, then
  ``("observe", windows)``, ``("reset", epoch)``, ``("save", path, user)``,
  ``("stop",)``.
- child -> parent: ``("ready",)``, ``("model", epoch, onnx_bytes)``, ``("stats", stats)``,
  ``("saved", path)``, ``("failed", message)`` (a save that failed), ``("error", message)``
  (the adapter died).

Models carry the epoch of the last reset the child had seen, so a model exported before a
reset but received after it is dropped instead of undoing the reset.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from ..modelfile import ModelFile

__all__ = ["AdaptationError"]

logger = logging.getLogger(__name__)

_START_TIMEOUT = 120.0  # importing torch on a loaded machine takes a while
_SAVE_TIMEOUT = 120.0
_STATS_SECONDS = 0.25  # the child reports its stats at most this often


class AdaptationError(RuntimeError):
    """The adaptation process failed (its message says why)."""


class _AdaptationProcess:
    """Parent-side handle of the adapter process. Thread-safe."""

    def __init__(self, model: ModelFile, options, nice: int, swap_seconds: float) -> None:
        # A plain interpreter on a socket pair, not multiprocessing's spawn: spawn re-imports
        # the parent's main script, which breaks every script without a __main__ guard.
        parent_sock, child_sock = socket.socketpair()
        with child_sock:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "emgstream.pipeline._adaptation_child",
                 str(child_sock.fileno())], pass_fds=(child_sock.fileno(),))
        self._conn = Connection(parent_sock.detach())
        self._conn.send(("start", model, options, swap_seconds))
        if nice:  # from here, so that the child's imports already run at the lower priority
            try:
                os.setpriority(os.PRIO_PROCESS, self._process.pid, nice)
            except OSError as err:
                logger.info("could not lower the adaptation process's priority: %s", err)
        self._send_lock = threading.Lock()
        self._lock = threading.Condition()  # guards what the reader thread updates
        self._epoch = 0
        self._models: list[bytes] = []
        self._replies: list[tuple] = []
        self.stats = None
        self.error: str | None = None
        self.ready = False
        self._closing = False
        # Always reading, so the child never blocks on a send while we block on ours (with
        # both socket buffers full that was a deadlock).
        self._reader = threading.Thread(target=self._read, name="emgstream-adaptation-reader",
                                        daemon=True)
        self._reader.start()

    # -- parent -> child ------------------------------------------------------------------
    def _send(self, message: tuple) -> None:
        with self._send_lock:
            try:
                self._conn.send(message)
            except (BrokenPipeError, OSError) as err:
                self.error = self.error or f"the adaptation process is gone: {err}"

    def observe(self, windows: np.ndarray) -> None:
        self._send(("observe", windows))

    def reset(self) -> None:
        """Ask for a reset; models exported before it are dropped from now on."""
        with self._lock:
            self._epoch += 1
            self._models.clear()
            epoch = self._epoch
        self._send(("reset", epoch))

    def save(self, path: str | Path, user: str) -> Path:
        with self._lock:
            self._replies.clear()
        self._send(("save", str(path), str(user)))
        with self._lock:
            done = self._lock.wait_for(lambda: self._replies or self.error is not None,
                                       timeout=_SAVE_TIMEOUT)
            if not done:
                raise AdaptationError(f"the adaptation process did not save within "
                                      f"{_SAVE_TIMEOUT:g} s")
            if not self._replies:
                raise AdaptationError(self.error)
            kind, value = self._replies.pop(0)
        if kind == "saved":
            return Path(value)
        raise AdaptationError(f"saving the personalized model failed: {value}")

    # -- child -> parent ------------------------------------------------------------------
    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                with self._lock:
                    if self.error is None and not self._closing:
                        self.error = (f"the adaptation process ended unexpectedly (exit "
                                      f"code {self._process.poll()})")
                    self._lock.notify_all()
                return
            kind = message[0]
            with self._lock:
                if kind == "model":
                    if message[1] == self._epoch:
                        self._models.append(message[2])
                elif kind == "stats":
                    self.stats = message[1]
                elif kind == "ready":
                    self.ready = True
                elif kind in ("saved", "failed"):
                    self._replies.append((kind, message[1]))
                elif kind == "error":
                    self.error = message[1]
                self._lock.notify_all()

    def take_models(self) -> list[bytes]:
        """Models received since the last call (current epoch only), oldest first."""
        with self._lock:
            models, self._models = self._models, []
            return models

    def close(self) -> None:
        with self._lock:
            self._closing = True
            ready = self.ready
        if ready:
            self._send(("stop",))
            try:
                self._process.wait(10.0)
            except subprocess.TimeoutExpired:
                logger.warning("adaptation process did not stop; terminating it")
        # still importing torch or stuck: nothing to lose, do not wait for it
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(5.0)
        self._reader.join(5.0)  # the child's end is closed: the reader sees EOF
        self._conn.close()

    @property
    def alive(self) -> bool:
        return self._process.poll() is None


def _child_main(conn, model: ModelFile, options, swap_seconds: float) -> None:
    """The adapter process: observe, step, export every ``swap_seconds`` at most."""
    try:
        from ..adapt import OnlineAdapter  # torch lives here, not in the pipeline's process

        adapter = OnlineAdapter(model) if options is None else OnlineAdapter(model, options)
        conn.send(("ready",))
        epoch, pending, last_export, idle = 0, False, time.monotonic(), False
        last_stats = 0.0
        while True:
            timeout = 0.05 if idle else 0.0
            while conn.poll(timeout):
                timeout = 0.0
                message = conn.recv()
                kind = message[0]
                if kind == "observe":
                    adapter.observe(message[1])
                    idle = False
                elif kind == "reset":
                    adapter.reset()
                    epoch, pending = message[1], False
                    conn.send(("stats", adapter.stats))
                elif kind == "save":
                    try:
                        conn.send(("saved", str(adapter.save(message[1], message[2]))))
                    except Exception as err:  # a bad path must not end adaptation
                        conn.send(("failed", f"{type(err).__name__}: {err}"))
                elif kind == "stop":
                    return
            if idle:
                continue  # nothing new since a step that did nothing
            stepped = adapter.step()
            pending = pending or stepped
            now = time.monotonic()
            if pending and now - last_export >= swap_seconds:
                conn.send(("model", epoch, adapter.export()))
                pending, last_export = False, time.monotonic()
            if now - last_stats >= _STATS_SECONDS:
                conn.send(("stats", adapter.stats))
                last_stats = now
            idle = not stepped
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        return  # the parent went away or is stopping
    except Exception:
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass
