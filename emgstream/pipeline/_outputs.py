"""Event subscribers: JSON lines on a text stream, and an LSL marker outlet."""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from ._decision import GestureEvent

__all__ = ["JsonLinesWriter", "LSLMarkerOutlet"]


class JsonLinesWriter:
    """Subscriber writing each event as one JSON line (``GestureEvent.to_json``), flushed.

    Parameters
    ----------
    stream : text file, optional
        Where to write; ``sys.stdout`` when None (looked up at each write, so that pytest's
        and click's capture see it).
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.written = 0

    def __call__(self, event: GestureEvent) -> None:
        stream = self._stream if self._stream is not None else sys.stdout
        with self._lock:
            stream.write(event.to_json() + "\n")
            stream.flush()
            self.written += 1

    def __repr__(self) -> str:
        target = getattr(self._stream, "name", "stdout")
        return f"<JsonLinesWriter to {target}, {self.written} events>"


class LSLMarkerOutlet:
    """Subscriber pushing each event's JSON to an LSL marker stream.

    A string stream of one channel at an irregular rate (type ``Markers``), which LabRecorder
    and every LSL tool record beside the EMG. Each marker is stamped with the LSL time of the
    window's last sample (``event.timestamp``), so it lines up with the EMG it was computed
    from; the emission time is inside the JSON.

    Parameters
    ----------
    name : str
        LSL stream name.
    source_id : str
        LSL source id; defaults to ``"emgstream-" + name``.
    """

    def __init__(self, name: str, source_id: str = "") -> None:
        from firmware_bridge.lsl_outlet import make_marker_outlet

        self._outlet = make_marker_outlet(name, source_id)
        self.name = name
        self.pushed = 0

    def __call__(self, event: GestureEvent) -> None:
        outlet = self._outlet  # close() may run in another thread
        if outlet is not None:
            outlet.push_sample([event.to_json()], event.timestamp)
            self.pushed += 1

    def close(self) -> None:
        """Remove the outlet from the network (idempotent)."""
        self._outlet = None

    def __enter__(self) -> "LSLMarkerOutlet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "open" if self._outlet is not None else "closed"
        return f"<LSLMarkerOutlet '{self.name}' {state}, {self.pushed} markers>"
