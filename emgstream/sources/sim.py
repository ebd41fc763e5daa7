"""The synthetic wristband: ``sim://?channels=16&rate=2000&user=0&session=0&seed=0``.

Delivers chunks of simulated EMG on a drift-free real-time schedule: chunk ``k`` becomes
available at ``t0 + (k + 1) * chunk / rate`` on the LSL clock (sleep, then spin for the last
millisecond), so the long-run rate is exact whatever the jitter of one wake-up. With
``realtime=0`` chunks come as fast as they are asked for, timestamps still spaced ``1/rate``.

The source knows what it is performing: :attr:`SimSource.last_labels` holds the gesture
index of every sample of the last chunk, :attr:`SimSource.class_names` names them, and
:attr:`SimSource.transitions` lists ``(lsl_time, class_index)`` at every change of gesture.

URI parameters
--------------
channels (16), rate (2000), user (0), session (0), seed (0), chunk (40 samples),
realtime (1), hold (gesture hold in seconds, 2.0), rest (rest between gestures, 1.5).
"""

from __future__ import annotations

import collections
import logging
import time
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from .._checks import check_positive_float, check_positive_int
from ._base import Source, StreamInfo

__all__ = ["DEMO_URI", "HELD_OUT_SESSION", "SimSource", "held_out_session"]

#: The first session no model trains on: the shipped recipe trains on sessions 0 and 1.
HELD_OUT_SESSION = 2
#: The demo's wearer: synthetic user 0 putting the band on again. The shipped model trained
#: on this user's sessions 0 and 1; session 2 is a new donning it has never seen.
DEMO_URI = f"sim://?session={HELD_OUT_SESSION}"

logger = logging.getLogger(__name__)

_SPIN_S = 0.001  # wake this early and spin the rest: sleep() overshoots by up to ~1 ms
_MAX_CATCH_UP_S = 1.0  # a consumer late by more than this gets the backlog in 1 s pieces
_BLOCK_S = 0.25  # generate this much at a time: the generator's cost is mostly per call


def held_out_session(uri: str) -> str:
    """``uri`` with ``session=HELD_OUT_SESSION`` added when it is a ``sim://`` URI that names
    neither user nor session (any other URI as it is). User 0 is one of the shipped model's
    training users: the live commands show it on a session it never trained on, as the demo
    does; a URI that asks for a user or a session gets what it asks for."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "sim" or {"user", "session"} & set(dict(parse_qsl(parts.query))):
        return uri
    separator = "&" if parts.query else "" if uri.endswith("?") else "?"
    return f"{uri}{separator}session={HELD_OUT_SESSION}"


class SimSource(Source):
    """A simulated wristband performing gestures; see the module docstring.

    Parameters
    ----------
    n_channels : int
        Electrodes around the band.
    sample_rate : float
        Samples per second.
    user, session : int
        Which synthetic user (and re-donning of the band) performs.
    seed : int
        Seed of the whole synthetic population; same seed, user and session give the same
        samples.
    chunk : int
        Samples per chunk.
    realtime : bool
        Pace chunks on the LSL clock; ``False`` delivers as fast as ``read`` is called.
    hold_s, rest_s : float
        Seconds each gesture is held and seconds of rest between gestures.
    """

    def __init__(self, n_channels: int = 16, sample_rate: float = 2000.0, user: int = 0,
                 session: int = 0, seed: int = 0, chunk: int = 40, realtime: bool = True,
                 hold_s: float = 2.0, rest_s: float = 1.5) -> None:
        super().__init__()
        self._n_channels = check_positive_int(n_channels, "channels")
        self._rate = check_positive_float(sample_rate, "rate")
        self._chunk = check_positive_int(chunk, "chunk")
        for value, name in ((user, "user"), (session, "session"), (seed, "seed")):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        self._user, self._session, self._seed = int(user), int(session), int(seed)
        self._realtime = bool(realtime)
        self._hold_s = check_positive_float(hold_s, "hold")
        self._rest_s = check_positive_float(rest_s, "rest")
        self._generator = None
        self._t0 = 0.0
        self._sent = 0
        self.last_labels = np.zeros(0, dtype=np.int16)
        self.transitions: collections.deque[tuple[float, int]] = collections.deque(maxlen=4096)
        self._last_label = -2

    @classmethod
    def from_uri(cls, target: str, params: dict[str, str]) -> "SimSource":
        known = {"channels", "rate", "user", "session", "seed", "chunk", "realtime", "hold",
                 "rest"}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"sim:// does not take {sorted(unknown)}; known: {sorted(known)}")
        if target.strip("/"):
            raise ValueError(f"sim:// takes no target, got {target!r} "
                             "(use sim://?channels=16&rate=2000)")

        def number(key, default, kind):
            raw = params.get(key, default)
            try:
                return kind(raw)
            except ValueError:
                raise ValueError(f"sim:// parameter {key}={raw!r} is not a valid "
                                 f"{kind.__name__}") from None

        realtime = str(params.get("realtime", "1")).lower()
        if realtime not in {"0", "1", "true", "false"}:
            raise ValueError(f"sim:// parameter realtime must be 0 or 1, got {realtime!r}")
        return cls(n_channels=number("channels", 16, int), sample_rate=number("rate", 2000, float),
                   user=number("user", 0, int), session=number("session", 0, int),
                   seed=number("seed", 0, int), chunk=number("chunk", 40, int),
                   realtime=realtime in {"1", "true"}, hold_s=number("hold", 2.0, float),
                   rest_s=number("rest", 1.5, float))

    # -- ground truth -------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """Names of the gestures the simulated user performs (``last_labels`` index them)."""
        from ..synth import GESTURES

        return list(GESTURES)

    # -- Source -------------------------------------------------------------------------
    def _make_generator(self):
        from ..synth import GESTURES, SynthConfig, SynthStream, make_user

        config = SynthConfig(n_channels=self._n_channels, sample_rate=self._rate,
                             hold_s=self._hold_s, rest_s=self._rest_s)
        return SynthStream(make_user(self._user, self._seed, config), self._session, GESTURES)

    def _open(self) -> None:
        from pylsl import local_clock

        self._generator = self._make_generator()
        self._buffer = (np.zeros((0, self._n_channels), np.float32), np.zeros(0, np.int16))
        self._info = StreamInfo(
            name=f"sim-u{self._user}-s{self._session}", n_channels=self._n_channels,
            sample_rate=self._rate, device_id=f"sim-{self._seed}-{self._user}-{self._session}",
            kind="sim", manufacturer="emgstream")
        self._sent = 0
        self._last_label = -2
        self.transitions.clear()
        self._clock = local_clock
        self._t0 = local_clock()
        logger.info("simulated band open: user %d session %d, %d ch @ %g Hz%s",
                    self._user, self._session, self._n_channels, self._rate,
                    "" if self._realtime else " (as fast as possible)")

    def _close(self) -> None:
        self._generator = None

    def _read(self, timeout: float) -> tuple[np.ndarray, np.ndarray]:
        n = self._chunk
        if self._realtime:
            due_at = self._t0 + (self._sent + n) / self._rate
            now = self._clock()
            wait = due_at - now
            if wait > timeout:
                time.sleep(max(timeout, 0.0))
                return (np.zeros((0, self._n_channels), np.float32), np.zeros(0, np.float64))
            if wait > _SPIN_S:
                time.sleep(wait - _SPIN_S)
            while self._clock() < due_at:
                pass
            # A late consumer gets every sample that is due (whole chunks), never a gap.
            due = int((self._clock() - self._t0) * self._rate) - self._sent
            n = max(n, min(due // n * n, int(_MAX_CATCH_UP_S * self._rate) // n * n or n))
            self._update_stats(backlog=max(0, due - n))
        samples, labels = self._take(n)
        timestamps = self._t0 + (self._sent + np.arange(n)) / self._rate
        self._sent += n
        self._note_transitions(labels, timestamps)
        self.last_labels = labels
        return samples, timestamps

    def _take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        emg, labels = self._buffer
        if len(emg) < n:
            more, more_labels, _ = self._generator.generate(
                max(n - len(emg), round(_BLOCK_S * self._rate)))
            emg, labels = np.concatenate([emg, more]), np.concatenate([labels, more_labels])
        self._buffer = (emg[n:], labels[n:])
        return emg[:n], labels[:n]

    def _note_transitions(self, labels: np.ndarray, timestamps: np.ndarray) -> None:
        changes = np.flatnonzero(np.diff(labels, prepend=self._last_label))
        for i in changes:
            self.transitions.append((float(timestamps[i]), int(labels[i])))
        self._last_label = int(labels[-1])
