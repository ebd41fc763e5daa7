"""The live pipeline: acquisition, inference and (optional) adaptation threads.

Threads and what they share
---------------------------
- acquisition: ``source.read`` -> chunk check -> streaming filter -> ring buffer; records the
  host arrival time of every accepted sample; the raw (unfiltered) chunk goes to a second,
  short ring for viewers (the spectrum must show the mains the filter removes) and to the
  recorder thread's queue when recording; notifies the inference thread.
- inference: wakes when the ring holds the next window end (sample count, not wall clock).
  Windows end at samples ``window + k * hop`` (exclusive). Several windows due at once are
  evaluated in one batch; more than ``max_catchup_hops`` and it skips to the newest, counting
  the skipped hops. ONNX -> softmax -> smoothing -> threshold -> debounce -> events.
- adaptation (optional): feeds the windows inference evaluated to
  :class:`emgstream.adapt.OnlineAdapter`, which runs torch in a child process (see
  ``_adaptation.py``); builds the ONNX session of each model it exports and hands it over;
  inference picks it up at its next hop, never waiting.
- recorder (while recording): writes raw chunks to HDF5 so a slow disk never stalls
  acquisition.

Subscribers are called in the inference thread and must return quickly.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from pylsl import local_clock

from .._checks import check_chunk
from .._extras import missing_extra
from ..dsp import RingBuffer, make_filter
from ..modelfile import ModelFile, ModelFileError
from ..sources import Source, StreamInfo
from ._adaptation import AdaptationError, _AdaptationProcess
from ._config import PipelineConfig
from ._decision import GestureEvent, Decider
from ._onnx import _Runner, _softmax

__all__ = ["Pipeline", "PipelineStats", "Snapshot"]

logger = logging.getLogger(__name__)

_RATE_SECONDS = 2.0  # effective rate is measured over this much recent wall time
_WARN_EVERY_S = 10.0  # a degraded stream is warned about again this often
# After a reset, the adapter's stats may still bring a report it sent before the reset (at
# most one step's worth, well under this); those are not shown.
_RESET_GRACE_SECONDS = 2.0
_JOIN_TIMEOUT = 10.0


@dataclass(frozen=True)
class PipelineStats:
    """Counters and recent latency; a copy, safe to keep.

    Latencies are per hop, from the host arrival of a window's last sample to the decision
    (the moment its event, if any, goes to subscribers), over the last
    ``config.latency_window`` hops; NaN before the first hop.
    """

    samples: int  #: samples accepted into the ring
    effective_rate: float  #: accepted samples per second over the last 2 s of wall time
    dropped_samples: int  #: samples the source knows it lost (gaps)
    corrupt_frames: int  #: frames the source rejected (serial)
    rejected_chunks: int  #: chunks refused by the pipeline's checks (shape, NaN)
    rejected_samples: int
    source_backlog: int  #: samples waiting in the transport
    inference_backlog: int  #: samples in the ring not yet seen by inference
    hops: int  #: windows evaluated
    skipped_hops: int  #: windows skipped to catch up
    events: int  #: events emitted
    latency_p50: float  #: seconds
    latency_p99: float  #: seconds
    model_version: int  #: model swaps so far
    recording: str | None  #: path being recorded, or None
    recorded_samples: int
    adaptation: object | None  #: the adapter's latest ``OnlineStats`` once adaptation ran

    def summary(self) -> str:
        """Human-readable lines (what ``emgstream run`` prints on exit)."""
        lines = [
            f"samples {self.samples} at {self.effective_rate:.1f} Hz effective; "
            f"dropped {self.dropped_samples}, corrupt frames {self.corrupt_frames}, "
            f"rejected chunks {self.rejected_chunks} ({self.rejected_samples} samples)",
            f"hops {self.hops}, skipped {self.skipped_hops}, events {self.events}; "
            f"latency p50 {self.latency_p50 * 1e3:.2f} ms, p99 {self.latency_p99 * 1e3:.2f} ms",
            f"backlog: source {self.source_backlog}, inference {self.inference_backlog} samples;"
            f" model version {self.model_version}",
        ]
        if self.recording is not None:
            lines.append(f"recording {self.recording}: {self.recorded_samples} samples")
        if self.adaptation is not None:
            lines.append(f"adaptation: {self.adaptation}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Snapshot:
    """What a viewer needs, copied out of the pipeline (never shared with the threads).

    Attributes
    ----------
    samples : float32 (n, channels)
        Newest filtered samples, up to ``config.display_seconds``.
    timestamps : float64 (n,)
        Their LSL times.
    raw : float32 (m, channels)
        Newest raw (unfiltered) samples, as the source delivered them, up to
        ``config.display_seconds``: what the filter removed (mains, drift) shows here.
        Read just after ``samples``, so it may end one chunk later.
    raw_timestamps : float64 (m,)
    rms : float32 (channels,)
        Per-channel RMS over the last ``config.rms_seconds``.
    probabilities : float64 (classes,)
        Smoothed probabilities of the latest hop (zeros before the first).
    gesture : str or None
        Current stable gesture (None while uncertain).
    confidence : float
    class_names, channel_names : tuple of str
    sample_rate : float
    stats : PipelineStats
    """

    samples: np.ndarray
    timestamps: np.ndarray
    raw: np.ndarray
    raw_timestamps: np.ndarray
    rms: np.ndarray
    probabilities: np.ndarray
    gesture: str | None
    confidence: float
    class_names: tuple[str, ...]
    channel_names: tuple[str, ...]
    sample_rate: float
    stats: PipelineStats


class _Recorder:
    """Raw chunks -> RecordingWriter in a thread of its own."""

    def __init__(self, writer) -> None:
        self.writer = writer
        self.path = str(getattr(writer, "path", ""))
        self.samples = 0
        self.error: BaseException | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="emgstream-recorder",
                                        daemon=True)
        self._thread.start()

    def put_chunk(self, samples: np.ndarray, timestamps: np.ndarray) -> None:
        with self._lock:
            if not self._closed:  # copies: a source may reuse its buffers on the next read
                self._queue.put(("chunk", samples.copy(), timestamps.copy()))

    def put_drop(self, time: float, count: int) -> None:
        with self._lock:
            if not self._closed:
                self._queue.put(("drop", time, count))

    def put_fault(self, time: float, kind: str, count: int) -> None:
        with self._lock:
            if not self._closed:
                self._queue.put(("fault", time, kind, count))

    def put_reject(self, samples: np.ndarray, timestamps: np.ndarray) -> None:
        with self._lock:
            if not self._closed:
                self._queue.put(("reject", samples.copy(), np.array(timestamps, copy=True)))

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        self._thread.join()
        self.writer.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None:
                continue  # keep draining so memory does not grow; the error is reported
            try:
                if item[0] == "chunk":
                    self.writer.append(item[1], item[2])
                    self.samples += item[1].shape[0]
                elif item[0] == "drop":
                    self.writer.add_dropped(item[1], item[2])
                elif item[0] == "fault":
                    self.writer.add_fault(*item[1:])
                else:  # the same policy as `record`: marked, not stored
                    self.writer.reject(item[1], item[2])
            except Exception as err:  # disk full, file removed: stop writing, keep running
                logger.error("recording to %s failed: %s", self.path, err)
                self.error = err


class Pipeline:
    """Live gesture recognition on a source with a model file.

    Parameters
    ----------
    source : Source
        Opened by :meth:`start` if not open yet; closed by :meth:`stop`.
    model : ModelFile
        Its preprocessing says the channels, rate, window and hop; a stream that does not
        match is refused at :meth:`start`.
    config : PipelineConfig, optional

    Examples
    --------
    >>> with Pipeline(open_source("sim://"), load_model_file("m.emgm")) as p:  # doctest: +SKIP
    ...     unsubscribe = p.subscribe(print)
    ...     time.sleep(10)
    """

    def __init__(self, source: Source, model: ModelFile,
                 config: PipelineConfig | None = None) -> None:
        if not isinstance(source, Source):
            raise TypeError(f"source must be an emgstream Source, got {type(source).__name__}")
        if not isinstance(model, ModelFile):
            raise TypeError(f"model must be a ModelFile, got {type(model).__name__}")
        config = PipelineConfig() if config is None else config
        if not isinstance(config, PipelineConfig):
            raise TypeError(f"config must be a PipelineConfig, got {type(config).__name__}")
        self._source = source
        self._model = model
        self._config = config
        self._state = "created"  # -> running -> stopped
        self._state_lock = threading.Lock()
        self._stop_event = threading.Event()
        self._data_ready = threading.Condition()
        self._hop_done = threading.Condition()  # notified after every hop (see _after_hop)
        self._subscribers: tuple[Callable[[GestureEvent], None], ...] = ()
        self._subscribers_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        self._source_done = False  # a finite source (replay without loop) has ended
        self._info: StreamInfo | None = None  # set by start(), once checked against the model
        # counters (each written by one thread)
        self._rejected_chunks = 0
        self._rejected_samples = 0
        self._hops = 0
        self._skipped_hops = 0
        self._events = 0
        self._subscriber_failures = 0
        self._processed = 0
        self._latencies: collections.deque[float] = collections.deque(
            maxlen=config.latency_window)
        # (arrival, samples accepted, samples dropped or rejected) per chunk, last ~2 s
        self._rate_marks: collections.deque[tuple[float, int, int]] = collections.deque()
        self._dropped_total = 0
        self._degraded = False  # the stream lacks samples (see _check_health)
        self._warned_at = 0.0
        self._current = (np.zeros(model.n_classes), -1, 0.0)
        # model swaps
        self._swap_lock = threading.Lock()
        self._next_runner: _Runner | None = None
        self._model_version = 0
        # recording and adaptation
        self._recorder: _Recorder | None = None
        self._last_recording: _Recorder | None = None
        self._adaptation: _AdaptationProcess | None = None
        self._adapt_swap_lock = threading.Lock()
        self._adapt_thread: threading.Thread | None = None
        self._adapt_stop = threading.Event()
        self._adapt_windows: collections.deque[np.ndarray] | None = None
        self._adapt_error: BaseException | None = None
        self._stats_at_reset: tuple[object, float] | None = None  # (adapter stats, time)

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> "Pipeline":
        """Open the source, check it against the model, load the graph, start the threads.

        Raises :class:`~emgstream.modelfile.ModelFileError` when the stream does not match
        the model (naming both) or the graph does not load; the source is closed again.
        """
        with self._state_lock:
            if self._state != "created":
                raise RuntimeError(f"this pipeline is {self._state}; a pipeline starts once")
            self._prepare()  # before the source opens: a live stream would queue meanwhile
            opened_here = not self._source.is_open
            self._source.open()
            try:
                info = self._source.info
                self._model.check_stream(info.n_channels, info.sample_rate)
            except BaseException:
                if opened_here:
                    self._source.close()
                raise
            self._info = info
            self._state = "running"
            self._threads = [
                threading.Thread(target=self._acquire, name="emgstream-acquisition",
                                 daemon=True),
                threading.Thread(target=self._infer, name="emgstream-inference", daemon=True),
            ]
            for thread in self._threads:
                thread.start()
        logger.info("pipeline started: %r", self)
        if self._config.adapt:
            self.start_adaptation()
        return self

    def _prepare(self) -> None:
        """Build filter, ring and session from the model, and warm the numba kernels."""
        p = self._model.preprocessing
        capacity = max(int(self._config.ring_seconds * p.sample_rate),
                       int(self._config.display_seconds * p.sample_rate),
                       p.window + p.hop * (self._config.max_catchup_hops + 1))
        self._runner = _Runner(self._model.onnx, self._model)
        self._decider = Decider(self._config, self._model.n_classes)
        # the first call of each kernel compiles or loads it (up to a second): do it here
        self._filter = make_filter(p)
        warm = np.zeros((p.hop, p.n_channels), dtype=np.float32)
        self._filter.process(warm)
        self._filter.reset()
        self._ring = RingBuffer(capacity, p.n_channels)
        self._ring.write(warm, np.zeros(p.hop))
        self._ring.read_since(0)
        self._ring.latest(1)
        self._ring = RingBuffer(capacity, p.n_channels)
        self._arrival = np.zeros(capacity, dtype=np.float64)  # host arrival time per slot
        # viewers only: as long as a snapshot shows (inference never reads it), plus a
        # second of slack so a snapshot's copy is never overwritten while it is taken
        self._raw_ring = RingBuffer(self._display_samples() + int(p.sample_rate) + 1,
                                    p.n_channels)

    def _display_samples(self) -> int:
        p = self._model.preprocessing
        return max(1, int(self._config.display_seconds * p.sample_rate))

    def stop(self) -> None:
        """Stop adaptation and recording, join every thread, close the source. Idempotent."""
        with self._state_lock:
            if self._state == "stopped":
                return
            was_running = self._state == "running"
            self._state = "stopped"
        if was_running:
            self._close_adaptation()
            self._stop_event.set()
            with self._data_ready:
                self._data_ready.notify_all()
            for thread in self._threads:
                thread.join(_JOIN_TIMEOUT)
                if thread.is_alive():
                    logger.error("thread %s did not stop within %g s", thread.name,
                                 _JOIN_TIMEOUT)
            self.stop_recording()
        self._source.close()
        if was_running:
            logger.info("pipeline stopped:\n%s", self.stats.summary())

    def __enter__(self) -> "Pipeline":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def is_running(self) -> bool:
        """True between start and stop while the threads work.

        False once a source error stopped acquisition, or once a finite source (one with a
        true ``finished`` attribute, e.g. a replay without loop) ended and every whole
        window of it was evaluated.
        """
        return self._state == "running" and not self._stop_event.is_set()

    @property
    def error(self) -> BaseException | None:
        """The exception that stopped acquisition or inference, if one did."""
        return self._error

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the threads end (source error, stop) or ``timeout``; True if ended."""
        return self._stop_event.wait(timeout)

    @property
    def info(self) -> StreamInfo:
        """The stream's description, as checked against the model at :meth:`start`
        (read-only; it stays available after :meth:`stop`)."""
        if self._info is None:
            raise RuntimeError("the stream's info is known once the pipeline has started")
        return self._info

    @property
    def model(self) -> ModelFile:
        return self._model

    @property
    def config(self) -> PipelineConfig:
        return self._config

    # -- events -----------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[GestureEvent], None]) -> Callable[[], None]:
        """Call ``fn(event)`` for each :class:`GestureEvent`; returns the unsubscribe function.

        ``fn`` runs in the inference thread: it must return quickly (queue heavy work).
        An exception in it is logged and does not stop the pipeline.
        """
        if not callable(fn):
            raise TypeError(f"subscriber must be callable, got {type(fn).__name__}")
        with self._subscribers_lock:
            self._subscribers = self._subscribers + (fn,)

        def unsubscribe() -> None:
            with self._subscribers_lock:
                subs = list(self._subscribers)
                if fn in subs:
                    subs.remove(fn)
                self._subscribers = tuple(subs)

        return unsubscribe

    def _emit(self, event: GestureEvent) -> None:
        self._events += 1
        for fn in self._subscribers:
            try:
                fn(event)
            except Exception:
                self._subscriber_failures += 1
                if self._subscriber_failures <= 3 or self._subscriber_failures % 1000 == 0:
                    logger.exception("subscriber %r failed on %r (failure %d)", fn, event,
                                     self._subscriber_failures)

    # -- model swaps ------------------------------------------------------------------------
    def swap_model(self, model: ModelFile | bytes) -> None:
        """Load another graph (same preprocessing and classes) and use it from the next hop.

        The session is built and checked in the calling thread; inference only exchanges a
        reference at a hop boundary, so it never waits and no hop is lost. ``model`` is a
        :class:`ModelFile` or the bytes of an ONNX graph with this model's input and outputs.
        """
        if isinstance(model, ModelFile):
            if model.preprocessing != self._model.preprocessing \
                    or list(model.class_names) != list(self._model.class_names):
                raise ModelFileError(
                    f"cannot swap in {model!r} with classes {model.class_names}: the running "
                    f"model is {self._model!r} with classes {self._model.class_names}; "
                    "preprocessing and classes must be equal")
            onnx_bytes = model.onnx
        elif isinstance(model, (bytes, bytearray)):
            onnx_bytes = bytes(model)
        else:
            raise TypeError(f"model must be a ModelFile or ONNX bytes, got "
                            f"{type(model).__name__}")
        runner = _Runner(onnx_bytes, self._model)
        with self._swap_lock:
            self._next_runner = runner

    # -- threads ------------------------------------------------------------------------------
    def _acquire(self) -> None:
        _realtime_scheduling(self._config.realtime_priority)
        source, ring, raw_ring, filt = self._source, self._ring, self._raw_ring, self._filter
        n_channels, capacity = self._info.n_channels, self._ring.capacity
        timeout = self._config.read_timeout
        try:
            while not self._stop_event.is_set():
                samples, timestamps = source.read(timeout)
                arrival = local_clock()
                recorder = self._recorder
                drops = source.drain_drops()  # always: the source keeps them until drained
                faults = source.drain_faults()
                self._dropped_total += sum(span.count for span in drops)
                if recorder is not None:
                    for span in drops:
                        recorder.put_drop(span.time, span.count)
                    for fault in faults:
                        recorder.put_fault(fault.time, fault.kind, fault.count)
                n = samples.shape[0]
                if n == 0:
                    if getattr(source, "finished", False):  # a replay without loop ended
                        logger.info("source finished after %d samples", ring.total_written)
                        self._source_done = True
                        with self._data_ready:
                            self._data_ready.notify_all()
                        return
                    continue
                try:
                    check_chunk(samples, timestamps, n_channels)
                    filtered = filt.process(samples)
                except ValueError as err:
                    self._reject(err, samples, timestamps, recorder)
                    continue
                start = ring.total_written
                pos = start % capacity
                head = min(n, capacity - pos)
                self._arrival[pos:pos + head] = arrival
                self._arrival[:n - head] = arrival
                ring.write(filtered, timestamps)
                raw_ring.write(samples, timestamps)
                if recorder is not None:
                    recorder.put_chunk(samples, timestamps)
                with self._data_ready:
                    self._data_ready.notify_all()
                marks = self._rate_marks
                marks.append((arrival, start + n, self._dropped_total + self._rejected_samples))
                while len(marks) > 2 and arrival - marks[1][0] > _RATE_SECONDS:
                    marks.popleft()
                self._check_health(marks)
        except Exception as err:  # source gone, device unplugged: stop, keep what we have
            logger.error("acquisition stopped: %s", err)
            self._fail(err)

    def _reject(self, err: Exception, samples, timestamps, recorder) -> None:
        self._rejected_chunks += 1
        self._rejected_samples += samples.shape[0]
        # the first few, then every 100th: a flood of bad chunks must not flood the log
        if self._rejected_chunks <= 3 or self._rejected_chunks % 100 == 0:
            logger.warning("rejected chunk %d of %d samples: %s", self._rejected_chunks,
                           samples.shape[0], err)
        if recorder is not None and np.shape(timestamps) == (samples.shape[0],) \
                and samples.shape[0]:
            # the recording marks the gap instead of storing non-finite samples
            recorder.put_reject(samples, timestamps)

    def _check_health(self, marks) -> None:
        """Warn while the last ~2 s of the stream lack more than ``config.warn_loss`` of
        their samples: the effective rate that far below nominal (not for a replay, whose
        pace is its speed), or that share of samples dropped or rejected."""
        (t0, accepted0, lost0), (t1, accepted1, lost1) = marks[0], marks[-1]
        if t1 - t0 < _RATE_SECONDS:
            return  # not a whole window yet: the rate of a few chunks says little
        accepted, lost = accepted1 - accepted0, lost1 - lost0
        rate, nominal = accepted / (t1 - t0), self._info.sample_rate
        loss = self._config.warn_loss
        slow = self._info.kind != "replay" and rate < (1 - loss) * nominal
        lossy = lost > loss * (accepted + lost)
        if (slow or lossy) and (not self._degraded or t1 - self._warned_at > _WARN_EVERY_S):
            logger.warning("stream degraded: %.0f Hz effective of %g Hz nominal, %.0f %% of the "
                           "samples of the last %.0f s lost; gestures may be missed or wrong",
                           rate, nominal, 100 * lost / max(accepted + lost, 1), t1 - t0)
            self._warned_at = t1
        elif self._degraded and not (slow or lossy):
            logger.warning("stream back to normal: %.0f Hz effective", rate)
        self._degraded = slow or lossy

    def _fail(self, err: BaseException) -> None:
        if self._error is None:
            self._error = err
        self._stop_event.set()
        with self._data_ready:
            self._data_ready.notify_all()

    def _infer(self) -> None:
        _realtime_scheduling(self._config.realtime_priority)
        try:
            self._infer_loop()
        except Exception as err:
            logger.exception("inference stopped")
            self._fail(err)

    def _infer_loop(self) -> None:
        p = self._model.preprocessing
        window, hop = p.window, p.hop
        ring, capacity = self._ring, self._ring.capacity
        names = self._model.class_names
        emit_every_hop = self._config.emit == "hop"
        max_batch = self._config.max_catchup_hops
        buf = np.zeros((0, p.n_channels), dtype=np.float32)  # samples [buf_start, counter)
        buf_ts = np.zeros(0, dtype=np.float64)
        buf_start = counter = 0
        next_end = window  # exclusive end of the next window due

        def due() -> bool:
            return (ring.total_written >= next_end or self._stop_event.is_set()
                    or self._source_done)

        while True:
            with self._data_ready:
                self._data_ready.wait_for(due, timeout=0.5)
            if self._stop_event.is_set():
                return
            if self._source_done and ring.total_written < next_end:
                logger.info("end of stream: every whole window evaluated")
                self._stop_event.set()  # the pipeline has ended; stop() cleans up
                return
            new, new_ts, counter, lost = ring.read_since(counter)
            if lost:  # ring overrun: restart the local buffer after the gap
                buf, buf_ts = new, new_ts
                buf_start = counter - new.shape[0]
                first = max(next_end, buf_start + window)
                late = -(-(first - next_end) // hop)
                self._skipped_hops += late
                next_end += late * hop
            else:
                buf = np.concatenate([buf, new]) if buf.shape[0] else new
                buf_ts = np.concatenate([buf_ts, new_ts]) if buf_ts.shape[0] else new_ts
            self._processed = counter
            if counter < next_end:
                continue
            n_due = (counter - next_end) // hop + 1
            if n_due > max_batch:  # too far behind: only the newest window
                self._skipped_hops += n_due - 1
                next_end += (n_due - 1) * hop
                n_due = 1
            ends = next_end + hop * np.arange(n_due)
            offsets = ends - buf_start
            windows = np.stack([buf[o - window:o].T for o in offsets])  # (batch, C, window)
            with self._swap_lock:
                if self._next_runner is not None:
                    self._runner, self._next_runner = self._next_runner, None
                    self._model_version += 1
            probs = _softmax(self._runner(windows))
            adapt_windows = self._adapt_windows
            if adapt_windows is not None:
                adapt_windows.extend(windows)
            for i, end in enumerate(ends):
                stable, confidence, smoothed, changed = self._decider.update(probs[i])
                last = int(end) - 1
                emitted = local_clock()
                latency = emitted - self._arrival[last % capacity]
                self._latencies.append(latency)
                self._current = (smoothed, stable, confidence)
                if changed or emit_every_hop:
                    self._emit(GestureEvent(
                        gesture=names[stable] if stable >= 0 else None, class_index=stable,
                        confidence=confidence,
                        probabilities=tuple(float(x) for x in smoothed),
                        sample_index=last, timestamp=float(buf_ts[offsets[i] - 1]),
                        latency=latency, emitted=emitted, model_version=self._model_version))
            self._hops += n_due
            with self._hop_done:
                self._hop_done.notify_all()
            next_end = int(ends[-1]) + hop
            keep_from = next_end - window - buf_start
            if keep_from > 0:
                buf, buf_ts = buf[keep_from:], buf_ts[keep_from:]
                buf_start += keep_from

    # -- adaptation ---------------------------------------------------------------------------
    def start_adaptation(self) -> None:
        """Start (or resume) online adaptation. No-op if it is on.

        The adapter (:class:`emgstream.adapt.OnlineAdapter`, torch) runs in a child process
        that starts in the background (importing torch takes seconds); a thread of this
        process feeds it the windows inference evaluated and swaps in the models it exports.
        See :mod:`emgstream.pipeline._adaptation` for why a process.
        """
        if not self.is_running:
            raise RuntimeError("start the pipeline before adaptation")
        if self._adapt_thread is not None and self._adapt_thread.is_alive():
            return
        missing = missing_extra("torch", "online adaptation")
        if missing:
            raise AdaptationError(missing)
        if self._adaptation is None or not self._adaptation.alive:
            self._adaptation = _AdaptationProcess(
                self._model, self._config.adapt_config, self._config.adapt_nice,
                self._config.adapt_swap_seconds)
        self._adapt_stop.clear()
        self._adapt_error = None
        self._adapt_windows = collections.deque(maxlen=self._config.adapt_buffer)
        self._adapt_thread = threading.Thread(target=self._adapt, name="emgstream-adaptation",
                                              daemon=True)
        self._adapt_thread.start()

    def stop_adaptation(self) -> None:
        """Pause adaptation; the adapted model stays in use and can still be saved or reset.
        Idempotent."""
        thread = self._adapt_thread
        if thread is None:
            return
        self._adapt_stop.set()
        thread.join()
        self._adapt_thread = None
        self._adapt_windows = None

    def reset_adaptation(self) -> None:
        """Forget what adaptation learned and go back to the source model (next hop)."""
        with self._adapt_swap_lock:
            if self._adaptation is not None:
                # the stats report zero counts from now, not once the adapter has answered
                # (it may be paused, or still starting)
                self._stats_at_reset = (self._adaptation.stats, time.monotonic())
                self._adaptation.reset()
            self.swap_model(self._model.onnx)

    def save_personalized(self, path: str | Path, user: str) -> Path:
        """Write the adapted model as a model file for ``user``; returns its path.

        Adaptation must have been started (it may be paused). Blocks until the adapter
        process has written the file.
        """
        if self._adaptation is None:
            raise RuntimeError("nothing to save: adaptation has not run "
                               "(start_adaptation first)")
        if self._state == "stopped":
            raise RuntimeError("the adapter ended with the pipeline: save the personalized "
                               "model before stop()")
        return self._adaptation.save(path, user)

    @property
    def adaptation_running(self) -> bool:
        return self._adapt_thread is not None and self._adapt_thread.is_alive()

    @property
    def adaptation_error(self) -> str | None:
        """Why adaptation stopped, if it failed (inference goes on with the last model)."""
        if self._adapt_error is not None:
            return f"{type(self._adapt_error).__name__}: {self._adapt_error}"
        return self._adaptation.error if self._adaptation is not None else None

    def _adapt(self) -> None:
        process = self._adaptation
        idle = self._model.preprocessing.hop / self._model.preprocessing.sample_rate
        try:
            while not self._adapt_stop.is_set() and not self._stop_event.is_set():
                if process.error is not None:
                    logger.error("adaptation stopped: %s", process.error)
                    return
                windows = self._adapt_windows
                if windows and process.ready:  # before that the child is importing torch
                    process.observe(np.stack([windows.popleft() for _ in range(len(windows))]))
                with self._adapt_swap_lock:  # orders our swaps against reset_adaptation's
                    for onnx_bytes in process.take_models():
                        self.swap_model(onnx_bytes)  # the session is built here
                self._adapt_stop.wait(idle)
        except Exception as err:
            logger.exception("adaptation stopped")
            self._adapt_error = err

    def _close_adaptation(self) -> None:
        self.stop_adaptation()
        if self._adaptation is not None:
            self._adaptation.close()

    # -- recording ------------------------------------------------------------------------------
    def start_recording(self, path: str | Path, **meta) -> None:
        """Record the raw (unfiltered) stream to ``path`` (emg2pose-layout HDF5).

        ``meta`` goes to :class:`emgstream.io.RecordingWriter` (user, session, ...). Written in
        a thread of its own; dropped and rejected samples are recorded as dropped spans.
        """
        if not self.is_running:
            raise RuntimeError("start the pipeline before recording")
        if self._recorder is not None:
            raise RuntimeError(f"already recording to {self._recorder.path}")
        from ..io import RecordingWriter  # h5py: only when recording

        p = self._model.preprocessing
        meta.setdefault("filters", {"bandpass": p.bandpass, "bandpass_order": p.bandpass_order,
                                    "notch": p.notch, "notch_harmonics": p.notch_harmonics})
        writer = RecordingWriter(path, self._info, **meta)
        self._recorder = self._last_recording = _Recorder(writer)
        logger.info("recording to %s", path)

    def stop_recording(self) -> Path | None:
        """Finish the recording (flush and close); returns its path, None if not recording."""
        recorder, self._recorder = self._recorder, None
        if recorder is None:
            return None
        recorder.close()
        if recorder.error is not None:
            logger.error("the recording %s stopped early: %s", recorder.path, recorder.error)
        return Path(recorder.path) if recorder.path else None

    # -- viewers ----------------------------------------------------------------------------------
    @property
    def stats(self) -> PipelineStats:
        source_stats = self._source.stats
        lat = np.array(list(self._latencies)) if self._latencies else None  # list(): atomic
        p50, p99 = (np.percentile(lat, [50, 99]) if lat is not None else (np.nan, np.nan))
        marks = list(self._rate_marks)
        rate = ((marks[-1][1] - marks[0][1]) / (marks[-1][0] - marks[0][0])
                if len(marks) >= 2 and marks[-1][0] > marks[0][0] else 0.0)
        ring = getattr(self, "_ring", None)
        total = ring.total_written if ring is not None else 0
        recording = self._recorder or self._last_recording
        return PipelineStats(
            samples=total, effective_rate=float(rate),
            dropped_samples=source_stats.dropped_samples,
            corrupt_frames=source_stats.corrupt_frames,
            rejected_chunks=self._rejected_chunks, rejected_samples=self._rejected_samples,
            source_backlog=source_stats.backlog,
            inference_backlog=max(0, total - self._processed),
            hops=self._hops, skipped_hops=self._skipped_hops, events=self._events,
            latency_p50=float(p50), latency_p99=float(p99), model_version=self._model_version,
            recording=recording.path if recording is not None else None,
            recorded_samples=recording.samples if recording is not None else 0,
            adaptation=self._adaptation_stats())

    def _adaptation_stats(self):
        """The adapter's latest stats; zero counts for a report from before the last reset."""
        stats = self._adaptation.stats if self._adaptation is not None else None
        at_reset = self._stats_at_reset
        if stats is None or at_reset is None or at_reset[0] is None:
            return stats
        before, when = at_reset
        # the report seen at reset, or one sent just before it (counts only grow until a
        # reset): what the adapter reports after its reset (OnlineStats()) is all zeros
        if stats is before or (time.monotonic() - when < _RESET_GRACE_SECONDS
                               and stats.windows_seen >= before.windows_seen > 0):
            return type(stats)()
        return stats

    def snapshot(self) -> Snapshot:
        """A copy of the newest signal, the current decision and the stats (any thread)."""
        return self._snapshot((0, 0))[0]

    def _after_hop(self, timeout: float) -> None:
        """Return when the inference thread has finished its next hop, or after ``timeout``.

        Work that another thread of this process starts right after a hop holds the GIL in
        the quiet part of the hop period, not when the next window is due.
        """
        with self._hop_done:
            self._hop_done.wait(timeout)

    def _snapshot(self, since: tuple[int, int]) -> tuple[Snapshot, tuple[int, int]]:
        """A snapshot whose ``samples`` and ``raw`` hold only what the filtered and the raw
        ring received after the counters ``since`` (at most ``display_seconds`` each), and
        the counters to pass next time. ``(0, 0)``: the whole display tail.

        :class:`PipelineProcess` sends snapshots this way, so that a viewer in another
        process receives each sample once instead of the whole tail every frame.
        """
        if self._state == "created":
            raise RuntimeError("start the pipeline before taking snapshots")
        p = self._model.preprocessing
        n = self._display_samples()
        samples, timestamps, end = _tail(self._ring, since[0], n)
        raw, raw_timestamps, raw_end = _tail(self._raw_ring, since[1], n)
        n_rms = max(1, int(self._config.rms_seconds * p.sample_rate))
        tail = self._ring.latest(min(n_rms, self._ring.capacity))[0]
        rms = (np.sqrt(np.mean(np.square(tail, dtype=np.float64), axis=0)).astype(np.float32)
               if tail.shape[0] else np.zeros(p.n_channels, dtype=np.float32))
        probabilities, stable, confidence = self._current
        snapshot = Snapshot(
            samples=samples, timestamps=timestamps, raw=raw, raw_timestamps=raw_timestamps,
            rms=rms,
            probabilities=np.array(probabilities, dtype=np.float64),
            gesture=self._model.class_names[stable] if stable >= 0 else None,
            confidence=float(confidence), class_names=tuple(self._model.class_names),
            channel_names=tuple(self._info.channel_names), sample_rate=p.sample_rate,
            stats=self.stats)
        return snapshot, (end, raw_end)

    def __repr__(self) -> str:
        p = self._model.preprocessing
        source = getattr(self._source, "_info", None)
        name = source.name if source is not None else type(self._source).__name__
        return (f"<Pipeline '{name}' -> {self._model.architecture.get('name', 'model')} "
                f"({p.n_channels} ch @ {p.sample_rate:g} Hz, window {p.window}, hop {p.hop}), "
                f"{self._state}, {self._hops} hops, {self._events} events"
                f"{', adapting' if self.adaptation_running else ''}>")


def _tail(ring: RingBuffer, counter: int, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """What ``ring`` received after ``counter``, at most its newest ``n`` samples, and the
    counter after them."""
    samples, timestamps, end, _ = ring.read_since(max(counter, ring.total_written - n))
    return samples[-n:], timestamps[-n:], end


def _realtime_scheduling(priority: int) -> None:
    """Put the calling thread under SCHED_FIFO at ``priority`` (0: leave it alone)."""
    if not priority:
        return
    try:  # Linux: the scheduler policy is per thread, addressed by its native id
        os.sched_setscheduler(threading.get_native_id(), os.SCHED_FIFO,
                              os.sched_param(priority))
    except (OSError, AttributeError) as err:
        logger.warning("%s keeps normal scheduling: SCHED_FIFO %d refused (%s)",
                       threading.current_thread().name, priority, err)
