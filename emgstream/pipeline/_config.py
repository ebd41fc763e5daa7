"""Configuration of the live pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from .._checks import check_option, check_positive_float, check_positive_int
from .._extras import missing_extra

__all__ = ["PipelineConfig"]


@dataclass(frozen=True)
class PipelineConfig:
    """How probabilities become gesture events, and the pipeline's buffers.

    Decision order, once per hop: softmax -> smoothing -> confidence threshold -> debounce.

    Attributes
    ----------
    smoothing : str
        ``"ema"`` (exponential moving average of the probabilities, span ``smoothing_hops``,
        i.e. ``alpha = 2 / (smoothing_hops + 1)``), ``"majority"`` (the most frequent argmax
        over the last ``smoothing_hops`` hops; its confidence is that class's mean probability
        over them) or ``"none"``.
    smoothing_hops : int
        Span of the smoothing, in hops.
    threshold : float
        A smoothed confidence below this makes the hop "uncertain" (class index -1).
    debounce : int
        A decision must agree for this many consecutive hops before it becomes the stable
        gesture; an event is emitted when the stable gesture changes to a class.
    emit : str
        ``"change"``: an event when the stable gesture changes (the default). ``"hop"``: an
        event every hop carrying the current stable gesture (a probability stream).
    max_catchup_hops : int
        When several hops are due at once (a large chunk, a short stall) up to this many are
        evaluated in one batch; beyond it inference skips to the newest window and counts the
        skipped hops, so it is never far behind the stream.
    latency_window : int
        Number of recent hops over which latency p50/p99 are reported.
    ring_seconds : float
        Seconds of filtered signal kept in the ring buffer (display, snapshots).
    display_seconds : float
        Seconds of filtered signal a :meth:`Pipeline.snapshot` returns.
    rms_seconds : float
        Window of the per-channel RMS in snapshots.
    read_timeout : float
        Longest the acquisition thread blocks in ``source.read``; bounds the stop time.
    warn_loss : float
        Warn (log) while more than this fraction of the stream is missing over the last
        2 s: an effective rate below ``(1 - warn_loss)`` times nominal, or that share of the
        samples dropped by the source or rejected (non-finite). Gestures decided on such a
        stream are unreliable.
    realtime_priority : int
        0 (default): normal scheduling. 1-99: run the acquisition and inference threads
        under ``SCHED_FIFO`` at this priority (Linux; needs root or ``CAP_SYS_NICE``, else a
        warning and normal scheduling), so that a busy machine delays them less.
    adapt : bool
        Start online adaptation with the pipeline (:mod:`emgstream.adapt`, torch, in a
        child process).
    adapt_nice : int
        Niceness added to the adaptation process, so the torch work yields the cores to
        acquisition and inference. 0 disables.
    adapt_buffer : int
        Most recent windows kept for the adapter between two of its steps.
    adapt_swap_seconds : float
        Least time between two model swaps: exporting a graph costs the adaptation thread
        a few hundred milliseconds, and the EMA teacher it serves moves slowly anyway.
    adapt_config : emgstream.adapt.OnlineConfig, optional
        The adapter's own settings (EMG-UP hyper-parameters); its defaults when None.
    """

    smoothing: str = "ema"
    smoothing_hops: int = 5
    threshold: float = 0.5
    debounce: int = 3
    emit: str = "change"
    max_catchup_hops: int = 8
    latency_window: int = 2000
    ring_seconds: float = 30.0
    display_seconds: float = 5.0
    rms_seconds: float = 0.2
    read_timeout: float = 0.05
    warn_loss: float = 0.2
    realtime_priority: int = 0
    adapt: bool = False
    adapt_nice: int = 10
    adapt_buffer: int = 512
    adapt_swap_seconds: float = 5.0
    adapt_config: object | None = None

    def __post_init__(self) -> None:
        check_option(self.smoothing, "smoothing", {"ema", "majority", "none"})
        check_option(self.emit, "emit", {"change", "hop"})
        for name in ("smoothing_hops", "debounce", "max_catchup_hops", "latency_window",
                     "adapt_buffer"):
            check_positive_int(getattr(self, name), name)
        for name in ("ring_seconds", "display_seconds", "rms_seconds", "read_timeout",
                     "adapt_swap_seconds"):
            check_positive_float(getattr(self, name), name)
        if not 0.0 < self.warn_loss < 1.0:
            raise ValueError(f"warn_loss must be a fraction in (0, 1), got {self.warn_loss!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold!r}")
        if isinstance(self.realtime_priority, bool) \
                or not isinstance(self.realtime_priority, int) \
                or not 0 <= self.realtime_priority <= 99:
            raise ValueError(f"realtime_priority must be an integer in [0, 99], got "
                             f"{self.realtime_priority!r}")
        if isinstance(self.adapt_nice, bool) or not isinstance(self.adapt_nice, int) \
                or not 0 <= self.adapt_nice <= 19:
            raise ValueError(f"adapt_nice must be an integer in [0, 19], got {self.adapt_nice!r}")
        if self.adapt:
            missing = missing_extra("torch", "online adaptation")
            if missing:
                raise ValueError(missing)
