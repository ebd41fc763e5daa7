"""The 3DC dataset (Côté-Allard et al., IEEE TNSRE 2019) rebuilt into labelled streams.

Layout on disk (the public LibEMG/3DCDataset, EMG folders only)::

    <root>/Participant<N>/{train,test}/EMG/3dc_EMG_gesture_<cycle>_<class>.txt

One file is one gesture held for about 5 s: rows are samples at 1000 Hz, 10 comma-separated
integer ADC counts. A cycle is one continuous recording cut into its 11 gestures, so the
cycle's files concatenated in class order rebuild a continuous labelled stream. Each
(person, block, cycle) becomes its own :class:`LabelledStream`, so a window cut from one
stream never straddles two cycles or two blocks (``train`` is recorded first, ``test`` after
a 5-minute break).

The samples are returned as recorded (float32 ADC counts, DC offset and 60 Hz mains
included); filter them with the model's preprocessing like the live path does.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from ._stream import LabelledStream

__all__ = ["THREEDC_CLASSES", "THREEDC_RATE", "THREEDC_CHANNELS", "load_3dc"]

logger = logging.getLogger(__name__)

THREEDC_CLASSES = ("Neutral", "Radial Deviation", "Wrist Flexion", "Ulnar Deviation",
                   "Wrist Extension", "Supination", "Pronation", "Power Grip", "Open Hand",
                   "Chuck Grip", "Pinch Grip")
THREEDC_RATE = 1000.0
THREEDC_CHANNELS = 10
_BLOCKS = ("train", "test")
_CYCLES = range(4)
_PARTICIPANT = re.compile(r"^Participant(\d+)$")


def load_3dc(root, participants=None, blocks=("train", "test")) -> list[LabelledStream]:
    """Load 3DC people as labelled continuous streams, one per person x block x cycle.

    Parameters
    ----------
    root : path
        The folder that holds ``Participant<N>`` folders.
    participants : iterable of int or str, optional
        Which people: numbers (``3``) or folder names (``"Participant3"``). Default: every
        ``Participant<N>`` folder under ``root``, in numeric order.
    blocks : iterable of {"train", "test"}
        Which recording blocks, in the order given.

    Returns
    -------
    list of LabelledStream
        In order person, block, cycle. ``emg`` is float32 (time, 10) ADC counts at 1000 Hz,
        ``labels`` int16 (time,) into :data:`THREEDC_CLASSES`, ``user`` is
        ``"Participant<N>"`` and ``session`` is ``"<block>/cycle<c>"``; ``meta`` holds the
        person number, block, cycle, units and each gesture's ``(start, stop)`` sample span.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"3DC root {str(root)!r} is not a folder")
    blocks = tuple(blocks)
    bad = [b for b in blocks if b not in _BLOCKS]
    if bad or not blocks:
        raise ValueError(f"blocks must be a non-empty subset of {_BLOCKS}, got {blocks!r}")
    numbers = _participant_numbers(root, participants)
    streams = []
    for number in numbers:
        for block in blocks:
            for cycle in _CYCLES:
                streams.append(_load_cycle(root, number, block, cycle))
    logger.info("loaded 3DC: %d people, blocks %s, %d streams", len(numbers), blocks,
                len(streams))
    return streams


def _participant_numbers(root: Path, participants) -> list[int]:
    if participants is None:
        found = sorted(int(m.group(1)) for p in root.iterdir()
                       if p.is_dir() and (m := _PARTICIPANT.match(p.name)))
        if not found:
            raise FileNotFoundError(f"no Participant<N> folders under {str(root)!r}")
        return found
    if isinstance(participants, (str, int)):
        participants = [participants]
    numbers = []
    for p in participants:
        if isinstance(p, str):
            m = _PARTICIPANT.match(p)
            if m is None and not p.isdigit():
                raise ValueError(f"participant must be a number or 'Participant<N>', got {p!r}")
            p = int(m.group(1) if m else p)
        elif isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p <= 0:
            raise ValueError(f"participant must be a positive number, got {p!r}")
        numbers.append(int(p))
    if not numbers:
        raise ValueError("participants is empty")
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"participants has duplicates: {numbers}")
    for n in numbers:
        if not (root / f"Participant{n}").is_dir():
            raise FileNotFoundError(f"3DC participant folder {str(root / f'Participant{n}')!r} "
                                    f"does not exist")
    return numbers


def _load_cycle(root: Path, number: int, block: str, cycle: int) -> LabelledStream:
    folder = root / f"Participant{number}" / block / "EMG"
    parts, spans, start = [], [], 0
    for label in range(len(THREEDC_CLASSES)):
        path = folder / f"3dc_EMG_gesture_{cycle}_{label}.txt"
        data = _read_gesture_file(path)
        parts.append(data)
        spans.append((start, start + len(data)))
        start += len(data)
    emg = np.concatenate(parts).astype(np.float32)
    labels = np.concatenate([np.full(len(p), k, np.int16) for k, p in enumerate(parts)])
    return LabelledStream(
        emg=emg, sample_rate=THREEDC_RATE, labels=labels, class_names=list(THREEDC_CLASSES),
        user=f"Participant{number}", session=f"{block}/cycle{cycle}",
        meta={"dataset": "3dc", "participant": number, "block": block, "cycle": cycle,
              "units": "adc_counts", "gesture_spans": spans})


def _read_gesture_file(path: Path) -> np.ndarray:
    """One gesture file -> int32 (time, 10); a clear error naming the file otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"3DC file {str(path)!r} is missing (each cycle needs all "
                                f"{len(THREEDC_CLASSES)} gesture files)")
    try:
        data = np.loadtxt(path, delimiter=",", dtype=np.int32, ndmin=2)
    except ValueError as err:
        raise ValueError(f"3DC file {str(path)!r} is not rows of {THREEDC_CHANNELS} "
                         f"comma-separated integers: {err}") from err
    if data.shape[0] == 0:
        raise ValueError(f"3DC file {str(path)!r} is empty")
    if data.shape[1] != THREEDC_CHANNELS:
        raise ValueError(f"3DC file {str(path)!r} has {data.shape[1]} columns, expected "
                         f"{THREEDC_CHANNELS} (one per channel)")
    return data
