"""LSL marker streams, read beside a signal: ``lsl://type=Markers``, ``lsl://name=Cues``.

A marker stream carries strings at an irregular rate (LabRecorder, PsychoPy, our own
``run --lsl-markers``). :class:`MarkerInlet` resolves one with the same URI syntax as
:class:`~emgstream.sources.lsl.LSLSource`, and :meth:`MarkerInlet.pull` returns what arrived
as ``(time, text)`` with the time on this machine's LSL clock (the sender's stamp plus the
clock offset, as the signal's), so markers and samples line up in a recording.
"""

from __future__ import annotations

import logging
import time

import pylsl
from pylsl.util import LostError, TimeoutError as LSLTimeoutError

from .._checks import MAX_CHANNELS, shown
from ._base import SourceError
from ._uri import parse_uri
from .lsl import LSLSource, _open_inlet, _resolve_first

__all__ = ["MarkerInlet"]

logger = logging.getLogger(__name__)

_OFFSET_REFRESH_S = 5.0
_MAX_PULL = 1024  # markers taken per pull; the inlet keeps the rest for the next


class MarkerInlet:
    """An LSL string stream read as ``(time, text)`` markers.

    Parameters
    ----------
    uri : str
        ``lsl://name=...``, ``lsl://type=...`` or ``lsl://source_id=...`` (combinable), with
        ``?timeout=`` seconds to find it (default 5).

    A sample of several channels becomes one text, its values joined by tabs.
    """

    def __init__(self, uri: str) -> None:
        scheme, target, params = parse_uri(uri)
        if scheme != "lsl":
            raise ValueError(f"a marker stream is an lsl:// URI (e.g. lsl://type=Markers), "
                             f"got {uri!r}")
        query = LSLSource.from_uri(target, params)  # the same keys, checks and messages
        self.uri = uri
        self._predicate, self._timeout = query.predicate, query.timeout
        self._inlet: pylsl.StreamInlet | None = None
        self.name = ""
        self.received = 0

    def open(self) -> "MarkerInlet":
        head = _resolve_first(self._predicate, self._timeout)
        if head.channel_format() != pylsl.cf_string:
            raise SourceError(f"LSL stream {shown(head.name())} ({self._predicate}) carries "
                              f"numbers; expected a marker stream of strings")
        if not 0 < head.channel_count() <= MAX_CHANNELS:
            raise SourceError(f"LSL marker stream {shown(head.name())} declares "
                              f"{head.channel_count()} channels; expected 1 to {MAX_CHANNELS}")
        inlet = pylsl.StreamInlet(head, recover=True)
        _, self._offset = _open_inlet(inlet, head, self._predicate, self._timeout)
        self._inlet, self.name = inlet, head.name()
        self._offset_at = time.monotonic()
        logger.info("recording markers of LSL stream %r (clock offset %.6f s)", self.name,
                    self._offset)
        return self

    def pull(self) -> list[tuple[float, str]]:
        """The markers that arrived since the last call, oldest first (never waits)."""
        if self._inlet is None:
            raise SourceError(f"{self!r} is not open: call open() or use 'with'")
        try:
            values, stamps = self._inlet.pull_chunk(timeout=0.0, max_samples=_MAX_PULL)
        except LostError:
            raise SourceError(f"LSL marker stream {self.name!r} was lost") from None
        if not stamps:
            return []
        now = time.monotonic()
        if now - self._offset_at > _OFFSET_REFRESH_S:
            try:
                self._offset = self._inlet.time_correction(timeout=0.05)
            except LSLTimeoutError:
                pass  # keep the last offset; it changes slowly
            self._offset_at = now
        self.received += len(stamps)
        return [(float(t) + self._offset, "\t".join(sample))
                for t, sample in zip(stamps, values)]

    def close(self) -> None:
        if self._inlet is not None:
            self._inlet.close_stream()
            self._inlet = None

    def __enter__(self) -> "MarkerInlet":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"'{self.name}', {self.received} markers" if self._inlet is not None \
            else "closed"
        return f"<MarkerInlet {self._predicate} ({state})>"
