"""Whole sessions in memory and datasets on disk."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .._checks import check_positive_float, check_positive_int
from ..io._stream import LabelledStream
from ._hand import CLASS_NAMES, GESTURES, UNSEEN_GESTURES
from ._stream import SynthStream
from ._users import SynthConfig, UserProfile, make_users

__all__ = ["generate_session", "write_dataset", "user_name"]

logger = logging.getLogger(__name__)

_BLOCK_S = 10.0  # generate in blocks to bound memory


def user_name(index: int) -> str:
    """The ``user`` string of synthetic user ``index`` in streams and files."""
    return f"synth{index:03d}"


def _blocks(stream: SynthStream, n_samples: int):
    block = max(1, int(_BLOCK_S * stream.sample_rate))
    done = 0
    while done < n_samples:
        n = min(block, n_samples - done)
        yield stream.generate(n)
        done += n


def generate_session(user: UserProfile, session: int = 0, duration_s: float = 60.0,
                     gestures: Sequence[str] = GESTURES) -> LabelledStream:
    """One session of ``user`` performing ``gestures``, in memory.

    Returns
    -------
    LabelledStream
        ``emg`` float32 (time, channels) raw µV, ``labels`` int16 (time,) into
        :data:`CLASS_NAMES`, ``pose`` float64 (time, 20) radians, ``user`` as
        :func:`user_name`, ``session`` the index as a string, ``meta`` with the session's
        draws (rotation, dead and saturated channel) and the seed.
    """
    check_positive_float(duration_s, "duration_s")
    stream = SynthStream(user, session, gestures)
    n = int(round(duration_s * stream.sample_rate))
    emg, labels, pose = (np.concatenate(parts) for parts in zip(*_blocks(stream, n)))
    return LabelledStream(emg=emg, sample_rate=stream.sample_rate, labels=labels,
                          class_names=list(CLASS_NAMES), pose=pose, user=user_name(user.index),
                          session=str(session), meta=_session_meta(stream, gestures))


def _session_meta(stream: SynthStream, gestures: Sequence[str]) -> dict:
    sess = stream.session
    return {"seed": stream.user.seed, "user_index": stream.user.index,
            "rotation": sess.rotation, "dead_channel": sess.dead_channel,
            "saturated_channel": sess.saturated_channel, "gestures": list(gestures)}


def write_dataset(root: str | os.PathLike, n_users: int, n_sessions: int = 2,
                  duration_s: float = 60.0, config: SynthConfig | None = None, seed: int = 0,
                  *, unseen_duration_s: float = 0.0, first_user: int = 0,
                  overwrite: bool = False,
                  progress: Callable[[int], None] | None = None) -> list[Path]:
    """Write ``n_users`` x ``n_sessions`` recordings in the emg2pose HDF5 layout.

    Each file holds EMG, joint angles and per-sample labels (class names
    :data:`CLASS_NAMES`). Files are ``<root>/synth<user>_s<session>_gestures.hdf5`` with
    ``stage="gestures"`` (the training vocabulary :data:`GESTURES` only); with
    ``unseen_duration_s > 0`` each session also gets ``..._unseen.hdf5`` (``stage="unseen"``)
    performing :data:`UNSEEN_GESTURES`, for zero-shot evaluation; never train on those.

    Parameters
    ----------
    first_user : int
        Index of the first user, so that disjoint populations come from one seed.
    progress : callable, optional
        Called with the number of samples just written (for a progress bar).

    Returns
    -------
    list of Path
        The files written, users then sessions then stages.
    """
    from ..io.recording import RecordingWriter
    from ..sources import StreamInfo

    check_positive_int(n_users, "n_users")
    check_positive_int(n_sessions, "n_sessions")
    check_positive_float(duration_s, "duration_s")
    if unseen_duration_s < 0:
        raise ValueError(f"unseen_duration_s must be >= 0, got {unseen_duration_s!r}")
    config = config or SynthConfig()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    info = StreamInfo(name="emgstream-synth", n_channels=config.n_channels,
                      sample_rate=config.sample_rate, kind="sim", manufacturer="emgstream")
    stages = [("gestures", GESTURES, duration_s)]
    if unseen_duration_s > 0:
        stages.append(("unseen", UNSEEN_GESTURES, unseen_duration_s))
    users = make_users(first_user + n_users, seed, config)[first_user:]
    paths = []
    for user in users:
        for session in range(n_sessions):
            for stage, gestures, seconds in stages:
                path = root / f"{user_name(user.index)}_s{session:02d}_{stage}.hdf5"
                stream = SynthStream(user, session, gestures)
                n = int(round(seconds * config.sample_rate))
                with RecordingWriter(path, info, user=user_name(user.index),
                                     session=str(session), stage=stage, side="right",
                                     with_pose=True, class_names=list(CLASS_NAMES),
                                     overwrite=overwrite) as writer:
                    # provenance, short enough for one marker (at most 1023 bytes)
                    writer.add_marker(0.0, f"emgstream synth seed={seed} "
                                           f"user={user.index} session={session} "
                                           f"stage={stage}")
                    written = 0
                    for emg, labels, pose in _blocks(stream, n):
                        times = (written + np.arange(len(emg))) / config.sample_rate
                        writer.append(emg, times, joint_angles=pose, labels=labels)
                        written += len(emg)
                        if progress is not None:
                            progress(len(emg))
                logger.info("wrote %s (%.0f s)", path, seconds)
                paths.append(path)
    return paths
