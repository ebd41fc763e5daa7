"""The pipeline in a process of its own, for a viewer that paints (the live demo window).

Why a process: PyQt6 and pyqtgraph hold the GIL while they paint (long QPainter calls made
from Python), so in one process the inference thread waited for the painter at its hops:
end-to-end latency p99 with the window open was 1.76x that of headless
(``benchmarks/bench_gui.py``). In its own process the pipeline shares only the cores with
the painter. ``emgstream run`` and ``emgstream demo --headless`` have no painter and keep
the in-process :class:`Pipeline`.

Processes and threads
---------------------
- child (``multiprocessing``, spawn: never fork a process that runs Qt and threads): loads
  the model file from the bytes it was sent with :func:`~emgstream.modelfile.load_model_file`
  (model files are untrusted input, checked there as any file), opens the source from its
  URI, runs an ordinary :class:`Pipeline` (so latency is measured exactly as headless, and
  the adapter is its child in turn). Its main thread serves the parent's calls: queries
  (snapshot, stats) at once, the others each in a short-lived thread, so that a save that
  takes seconds never delays a snapshot. One sender thread sends everything the child has
  to say; the inference thread only queues events for it, and so never blocks on the pipe.
- parent: one reader thread receives events (and calls the subscribers) and replies; a call
  sends a request and waits for its reply, with a timeout. A child that dies (crash, kill)
  ends the reader's ``recv``: ``error`` says so with the exit code, ``is_running`` is False
  and waiting calls raise at once.

Protocol: pickled tuples on a ``multiprocessing`` pipe between our own two processes.

- parent -> child: ``("call", id, name, args)``, ``("stop",)``.
- child -> parent: ``("started", info)`` or ``("failed", exception)`` first; then
  ``("event", GestureEvent)``, ``("reply", id, ok, value_or_exception, cpu_seconds)``,
  ``("ended", exception_or_None)`` when the pipeline stopped by itself (source error, end
  of a replay); ``("stopped", stats, cpu_seconds)`` last.

Snapshots are sent as deltas: the parent passes the ring counters it has seen, the child
returns only the samples written since (about 19 kB per frame at 30 frames/s for 16 channels
at 2 kHz, instead of 1.4 MB for the whole 5 s tails) and the parent keeps the display tails.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing
import pickle
import queue
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..modelfile import ModelFile, load_model_file, save_model_file
from ..sources import StreamInfo
from ._config import PipelineConfig
from ._decision import GestureEvent
from ._pipeline import PipelineStats, Snapshot

__all__ = ["PipelineProcess", "PipelineProcessError"]

logger = logging.getLogger(__name__)

_START_TIMEOUT = 60.0  # spawn, imports (numba, onnxruntime) and opening the source, loaded
_CALL_TIMEOUT = 10.0
_SAVE_TIMEOUT = 150.0  # the adapter's own save timeout is 120 s
_STOP_TIMEOUT = 30.0  # the pipeline joins its threads and the adapter process
_POLL_S = 0.1  # the child notices a pipeline that stopped by itself within this
_QUERIES = frozenset({"snapshot", "stats", "adaptation_state"})  # answered at once
_COMMANDS = frozenset({"swap_model", "start_adaptation", "stop_adaptation",
                       "reset_adaptation", "save_personalized", "start_recording",
                       "stop_recording"})


class PipelineProcessError(RuntimeError):
    """The pipeline process did not answer in time, or is gone (the message says which)."""


class _Tail:
    """The newest ``n`` samples of one of the child's rings, kept from deltas."""

    def __init__(self, n: int, n_channels: int) -> None:
        self._n = n
        self.samples = np.zeros((0, n_channels), dtype=np.float32)
        self.timestamps = np.zeros(0, dtype=np.float64)
        self.end = 0  # ring counter after our newest sample

    def update(self, samples: np.ndarray, timestamps: np.ndarray, end: int) -> None:
        new = end - self.end
        if new <= 0:  # a reply that another thread's newer one overtook
            return
        # a delta longer than what we lack overlaps what we hold (two requests at once);
        # a shorter one follows a gap and holds the newest n samples anyway
        samples, timestamps = samples[-new:], timestamps[-new:]
        self.samples = np.concatenate([self.samples, samples])[-self._n:]
        self.timestamps = np.concatenate([self.timestamps, timestamps])[-self._n:]
        self.end = end


class PipelineProcess:
    """A :class:`Pipeline` running in a child process, with the same controls.

    For viewers that paint (the live demo window): their GIL is not the pipeline's. Latency,
    stats and events are the child pipeline's own; events reach subscribers here.

    Parameters
    ----------
    source_uri : str
        Opened in the child with :func:`emgstream.sources.open_source`.
    model : ModelFile or path
        Its file's bytes go to the child, which loads and validates them as a model file.
    config : PipelineConfig, optional
    call_timeout : float
        Seconds a call waits for its reply (``save_personalized``: 150 s; ``start``: 60 s)
        before it raises :class:`PipelineProcessError` naming the call.

    Examples
    --------
    >>> with PipelineProcess("sim://", "models/default.emgm") as p:  # doctest: +SKIP
    ...     p.subscribe(print)
    ...     time.sleep(10)
    """

    def __init__(self, source_uri: str, model: ModelFile | str | Path,
                 config: PipelineConfig | None = None, *,
                 call_timeout: float = _CALL_TIMEOUT) -> None:
        if not isinstance(source_uri, str):
            raise TypeError(f"source_uri must be a str, got {type(source_uri).__name__}")
        config = PipelineConfig() if config is None else config
        if not isinstance(config, PipelineConfig):
            raise TypeError(f"config must be a PipelineConfig, got {type(config).__name__}")
        if isinstance(model, ModelFile):
            with tempfile.TemporaryDirectory(prefix="emgstream-") as tmp:
                path = save_model_file(Path(tmp) / "model.emgm", model)
                self._model_bytes, self._model_name = path.read_bytes(), "model.emgm"
        elif isinstance(model, (str, Path)):
            path = Path(model)
            model = load_model_file(path)  # refuses a bad file here already
            self._model_bytes, self._model_name = path.read_bytes(), path.name
        else:
            raise TypeError(f"model must be a ModelFile or a path, got {type(model).__name__}")
        if not call_timeout > 0:
            raise ValueError(f"call_timeout must be positive, got {call_timeout!r}")
        self._uri = source_uri
        self._model = model
        self._config = config
        self._call_timeout = float(call_timeout)
        self._state = "created"  # -> running -> stopped
        self._state_lock = threading.Lock()
        self._process = None
        self._pid: int | None = None
        self._conn = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()  # guards everything the reader thread sets
        self._ids = itertools.count(1)
        self._replies: dict[int, tuple | None] = {}  # call id -> reply, None while waiting
        self._started: tuple | None = None
        self._ended = False  # the child's pipeline stopped (by itself, or the child died)
        self._gone = False  # the child's end of the pipe is closed
        self._error: BaseException | None = None
        self._info: StreamInfo | None = None
        self._final_stats: PipelineStats | None = None
        self._cpu_seconds = 0.0
        self._subscribers: tuple[Callable[[GestureEvent], None], ...] = ()
        self._subscriber_failures = 0
        p = model.preprocessing
        n = max(1, int(config.display_seconds * p.sample_rate))
        self._tails = (_Tail(n, p.n_channels), _Tail(n, p.n_channels))
        self._tails_lock = threading.Lock()
        self._last_snapshot: Snapshot | None = None

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> "PipelineProcess":
        """Start the process and its pipeline; return once it runs.

        Raises what the child's :meth:`Pipeline.start` raised (same type and message: a bad
        URI, a stream that does not match the model), or :class:`PipelineProcessError` if
        the process did not start within 60 s or died meanwhile.
        """
        with self._state_lock:
            if self._state != "created":
                raise RuntimeError(f"this pipeline process is {self._state}; it starts once")
            self._state = "running"
        context = multiprocessing.get_context("spawn")  # never fork: Qt and threads
        self._conn, child_conn = context.Pipe()
        root = logging.getLogger()  # the child logs as we do, if we log at all
        log_level = root.getEffectiveLevel() if root.handlers else None
        self._process = context.Process(
            target=_child_main, name="emgstream-pipeline", daemon=True,
            args=(child_conn, self._uri, self._model_bytes, self._model_name, self._config,
                  log_level))
        self._process.start()
        self._pid = self._process.pid
        child_conn.close()  # ours: the child's death must end the reader's recv
        self._reader = threading.Thread(target=self._read, name="emgstream-pipeline-reader",
                                        daemon=True)
        self._reader.start()
        with self._cond:
            self._cond.wait_for(lambda: self._started is not None or self._gone,
                                timeout=_START_TIMEOUT)
            started = self._started
        if started is None or started[0] != "started":
            self.stop()
            if started is not None:
                raise started[1]
            raise self._error or PipelineProcessError(
                f"the pipeline process did not start within {_START_TIMEOUT:g} s")
        logger.info("pipeline process %d started: %r", self._pid, self)
        return self

    def stop(self) -> None:
        """Stop the child's pipeline (and its adapter) and end the process; idempotent.

        Waits up to 30 s for a clean exit and only then terminates the process. No process
        or thread of this object outlives the call.
        """
        with self._state_lock:
            if self._state == "stopped":
                return
            self._state = "stopped"
        process = self._process
        if process is None:
            return
        self._send(("stop",))
        process.join(_STOP_TIMEOUT)
        if process.is_alive():
            logger.error("pipeline process %d did not stop within %g s; terminating it",
                         process.pid, _STOP_TIMEOUT)
            process.terminate()
            process.join(5.0)
            if process.is_alive():
                process.kill()
                process.join()
        self._reader.join()  # the child's end is closed: the reader has seen EOF
        self._conn.close()
        process.close()
        logger.info("pipeline process stopped")

    def __enter__(self) -> "PipelineProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def is_running(self) -> bool:
        """True while the child's pipeline runs: False after stop, once the stream ended or
        failed, or once the process died."""
        return self._state == "running" and self._started is not None and not self._ended

    @property
    def error(self) -> BaseException | None:
        """What stopped the child's pipeline (as it raised it there), or a
        :class:`PipelineProcessError` with the exit code if the process died."""
        return self._error

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the child's pipeline ends (error, end of stream, stop) or
        ``timeout``; True if it ended."""
        with self._cond:
            return self._cond.wait_for(lambda: self._ended or self._state == "stopped",
                                       timeout=timeout)

    @property
    def pid(self) -> int | None:
        """The child process's id (None before start)."""
        return self._pid

    @property
    def info(self) -> StreamInfo:
        """The stream's description, as checked against the model in the child."""
        if self._info is None:
            raise RuntimeError("the stream's info is known once the pipeline has started")
        return self._info

    @property
    def model(self) -> ModelFile:
        return self._model

    @property
    def config(self) -> PipelineConfig:
        return self._config

    @property
    def cpu_seconds(self) -> float:
        """CPU time the child process has used (all its threads; not the adapter's own
        process), as of its latest reply."""
        return self._cpu_seconds

    # -- events ---------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[GestureEvent], None]) -> Callable[[], None]:
        """Call ``fn(event)`` for each :class:`GestureEvent`; returns the unsubscribe function.

        ``fn`` runs in this object's reader thread, which also receives every reply: it must
        return quickly (queue heavy work). An exception in it is logged.
        """
        if not callable(fn):
            raise TypeError(f"subscriber must be callable, got {type(fn).__name__}")
        with self._cond:
            self._subscribers = self._subscribers + (fn,)

        def unsubscribe() -> None:
            with self._cond:
                subs = list(self._subscribers)
                if fn in subs:
                    subs.remove(fn)
                self._subscribers = tuple(subs)

        return unsubscribe

    def _emit(self, event: GestureEvent) -> None:
        for fn in self._subscribers:
            try:
                fn(event)
            except Exception:
                self._subscriber_failures += 1
                if self._subscriber_failures <= 3 or self._subscriber_failures % 1000 == 0:
                    logger.exception("subscriber %r failed on %r (failure %d)", fn, event,
                                     self._subscriber_failures)

    # -- calls ----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The child pipeline's :meth:`Pipeline.snapshot` (a copy, any thread).

        Once the process has ended, the last snapshot received (its numbers no longer move).
        """
        if self._state == "created":
            raise RuntimeError("start the pipeline before taking snapshots")
        with self._tails_lock:
            since = (self._tails[0].end, self._tails[1].end)
        if self._gone or self._state == "stopped":
            if self._last_snapshot is None:
                raise PipelineProcessError("the pipeline process has ended: no snapshot")
            return self._last_snapshot
        delta, (end, raw_end) = self._call("snapshot", since)
        filtered, raw = self._tails
        with self._tails_lock:
            filtered.update(delta.samples, delta.timestamps, end)
            raw.update(delta.raw, delta.raw_timestamps, raw_end)
            snapshot = dataclasses.replace(
                delta, samples=filtered.samples.copy(), timestamps=filtered.timestamps.copy(),
                raw=raw.samples.copy(), raw_timestamps=raw.timestamps.copy())
        self._last_snapshot = snapshot
        return snapshot

    @property
    def stats(self) -> PipelineStats:
        """The child pipeline's stats; after stop, those it had when it stopped."""
        if self._final_stats is not None:
            return self._final_stats
        if self._gone and self._last_snapshot is not None:
            return self._last_snapshot.stats
        return self._call("stats")

    def swap_model(self, model: ModelFile | bytes) -> None:
        """:meth:`Pipeline.swap_model` in the child (a ModelFile, or ONNX bytes)."""
        self._call("swap_model", model)

    def start_adaptation(self) -> None:
        """:meth:`Pipeline.start_adaptation` in the child (its adapter is the child's)."""
        self._call("start_adaptation")

    def stop_adaptation(self) -> None:
        self._call("stop_adaptation")

    def reset_adaptation(self) -> None:
        self._call("reset_adaptation")

    def save_personalized(self, path: str | Path, user: str) -> Path:
        """:meth:`Pipeline.save_personalized`; blocks until the adapter has written it."""
        return self._call("save_personalized", str(Path(path).absolute()), user,
                          timeout=_SAVE_TIMEOUT)

    @property
    def adaptation_running(self) -> bool:
        return self._adaptation_state()[0]

    @property
    def adaptation_error(self) -> str | None:
        return self._adaptation_state()[1]

    def _adaptation_state(self) -> tuple[bool, str | None]:
        if self._gone or self._state != "running":
            return False, None
        return self._call("adaptation_state")

    def start_recording(self, path: str | Path, **meta) -> None:
        """:meth:`Pipeline.start_recording` in the child (it writes the file)."""
        self._call("start_recording", str(Path(path).absolute()), meta)

    def stop_recording(self) -> Path | None:
        return self._call("stop_recording")

    def _call(self, name: str, *args, timeout: float | None = None):
        if self._state != "running" or self._started is None:
            raise RuntimeError(f"{name}(): the pipeline process is not running "
                               f"({self._state})")
        call_id = next(self._ids)
        with self._cond:
            if self._gone:
                raise PipelineProcessError(f"{name}(): {self._error}")
            self._replies[call_id] = None
        self._send(("call", call_id, name, args))
        timeout = self._call_timeout if timeout is None else timeout
        with self._cond:
            self._cond.wait_for(lambda: self._replies[call_id] is not None or self._gone,
                                timeout=timeout)
            reply = self._replies.pop(call_id)
        if reply is None:
            if self._gone:
                raise PipelineProcessError(f"{name}(): {self._error}")
            raise PipelineProcessError(f"the pipeline process did not answer {name}() within "
                                       f"{timeout:g} s")
        ok, value = reply
        if not ok:
            raise value
        return value

    def _send(self, message: tuple) -> None:
        with self._send_lock:
            try:
                self._conn.send(message)
            except (BrokenPipeError, OSError) as err:  # the reader reports the death
                logger.debug("pipeline process: cannot send %s: %s", message[0], err)

    # -- the reader thread ----------------------------------------------------------------
    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                self._process.join(1.0)  # the exit code, once the child is reaped
                code = self._process.exitcode
                with self._cond:
                    if not self._ended and self._state == "running":
                        how = (f"killed by signal {-code}" if code is not None and code < 0
                               else f"exit code {code}")
                        self._error = PipelineProcessError(
                            f"the pipeline process ended unexpectedly ({how})")
                        logger.error("%s", self._error)
                    self._ended = self._gone = True
                    self._cond.notify_all()
                return
            kind = message[0]
            if kind == "event":
                self._emit(message[1])
                continue
            with self._cond:
                if kind == "reply":
                    _, call_id, ok, value, self._cpu_seconds = message
                    if call_id in self._replies:  # else its caller gave up waiting
                        self._replies[call_id] = (ok, value)
                elif kind == "started":
                    self._info = message[1]
                    self._started = message
                elif kind == "failed":
                    self._started = message
                elif kind == "ended":
                    self._error = message[1]
                    self._ended = True
                elif kind == "stopped":
                    self._final_stats, self._cpu_seconds = message[1], message[2]
                    self._ended = True
                self._cond.notify_all()

    def __repr__(self) -> str:
        p = self._model.preprocessing
        pid = f", pid {self.pid}" if self.pid is not None else ""
        return (f"<PipelineProcess '{self._uri}' -> "
                f"{self._model.architecture.get('name', 'model')} ({p.n_channels} ch @ "
                f"{p.sample_rate:g} Hz, window {p.window}, hop {p.hop}), {self._state}"
                f"{', ended' if self._ended and self._state == 'running' else ''}{pid}>")


# -- the child process ------------------------------------------------------------------------
def _portable(err: BaseException) -> BaseException:
    """``err`` if it survives pickling (same type and message in the parent), else a
    RuntimeError with its type name and message."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


def _send_all(conn, outbox: queue.SimpleQueue) -> None:
    """The child's sender thread: everything queued, in order, until None."""
    while True:
        message = outbox.get()
        if message is None:
            return
        try:
            conn.send(message)
        except (BrokenPipeError, OSError):
            return  # the parent is gone; the main thread sees EOF and stops the pipeline


def _load_model(model_bytes: bytes, name: str) -> ModelFile:
    with tempfile.TemporaryDirectory(prefix="emgstream-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(model_bytes)
        return load_model_file(path)


def _child_main(conn, uri: str, model_bytes: bytes, model_name: str,
                config: PipelineConfig, log_level: int | None) -> None:
    from ..sources import open_source
    from ._pipeline import Pipeline

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if log_level is not None:  # a no-op if the re-imported main script configured it
        logging.basicConfig(level=log_level, format="%(asctime)s %(processName)s %(name)s "
                                                    "%(levelname)s: %(message)s")
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    sender = threading.Thread(target=_send_all, args=(conn, outbox), daemon=True,
                              name="emgstream-pipeline-sender")
    sender.start()
    pipeline = None
    try:
        pipeline = Pipeline(open_source(uri), _load_model(model_bytes, model_name), config)
        pipeline.subscribe(lambda event: outbox.put(("event", event)))  # never blocks
        pipeline.start()
    except Exception as err:
        logger.info("pipeline process: cannot start %s: %s", uri, err)
        outbox.put(("failed", _portable(err)))
        outbox.put(None)
        sender.join()
        return
    outbox.put(("started", pipeline.info))
    ended = False
    try:
        while True:
            if conn.poll(_POLL_S):
                message = conn.recv()
                if message[0] == "stop":
                    break
                _, call_id, name, args = message
                if name in _QUERIES:
                    _serve(pipeline, outbox, call_id, name, args)
                else:  # may take seconds (a save): the snapshots go on meanwhile
                    threading.Thread(target=_serve, args=(pipeline, outbox, call_id, name, args),
                                     name=f"emgstream-call-{name}", daemon=True).start()
            if not ended and not pipeline.is_running:
                ended = True
                error = pipeline.error
                outbox.put(("ended", None if error is None else _portable(error)))
    except (EOFError, OSError):
        logger.info("pipeline process: the parent is gone; stopping")
    finally:
        pipeline.stop()
        outbox.put(("stopped", pipeline.stats, time.process_time()))
        outbox.put(None)
        sender.join(5.0)


def _serve(pipeline, outbox: queue.SimpleQueue, call_id: int, name: str, args: tuple) -> None:
    try:
        if name == "snapshot":
            # built just after a hop: the ~1 ms of Python it costs then never delays a window
            p = pipeline.model.preprocessing
            pipeline._after_hop(2.0 * p.hop / p.sample_rate)
            value = pipeline._snapshot(args[0])
        elif name == "stats":
            value = pipeline.stats
        elif name == "adaptation_state":
            value = (pipeline.adaptation_running, pipeline.adaptation_error)
        elif name == "start_recording":
            value = pipeline.start_recording(args[0], **args[1])
        elif name in _COMMANDS:
            value = getattr(pipeline, name)(*args)
        else:
            raise ValueError(f"unknown call {name!r}")
        reply = ("reply", call_id, True, value, time.process_time())
    except Exception as err:
        reply = ("reply", call_id, False, _portable(err), time.process_time())
    outbox.put(reply)
