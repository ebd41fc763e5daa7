"""``emgstream play``: a recording as a real LSL outlet, read back by our ``record`` (with
``--markers``) and by MNE-LSL; and MNE-LSL's player recorded by ``record``."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from emgstream.cli import main
from emgstream.io import RecordingWriter, read_recording, write_xdf
from emgstream.sources import StreamInfo

_RATE = 500.0
_CLASSES = ["rest", "fist"]


@pytest.fixture
def recording(tmp_path):
    """3 s, 3 named channels, labels that change every second, two markers."""
    n = int(3 * _RATE)
    emg = (np.random.default_rng(1).standard_normal((n, 3)) * 25).astype(np.float32)
    labels = np.repeat(np.array([0, 1, -1], np.int16), n // 3)
    path = tmp_path / "rec.h5"
    info = StreamInfo("band", 3, _RATE, channel_names=("flexor", "extensor", "thumb"),
                      manufacturer="acme")
    with RecordingWriter(path, info, user="ann", class_names=_CLASSES) as w:
        w.append(emg, 50.0 + np.arange(n) / _RATE, labels=labels)
        w.add_marker(50.0 + 0.5, "cue: fist")
        w.add_marker(50.0 + 2.25, '{"gesture":"fist"}')
    return path


def _file_events(path) -> dict[int, list[str]]:
    """Sample index -> texts the player should publish there (label changes, markers)."""
    rec = read_recording(path)
    events: dict[int, list[str]] = {}
    change = np.r_[0, np.flatnonzero(np.diff(rec.labels)) + 1]
    for i in change:
        label = rec.labels[i]
        events.setdefault(int(i), []).append(rec.class_names[label] if label >= 0
                                             else "unlabelled")
    for t, text in rec.markers:
        events.setdefault(int(np.argmin(np.abs(rec.time - t))), []).append(text)
    return events


@contextlib.contextmanager
def _player(*args):
    proc = subprocess.Popen([sys.executable, "-m", "emgstream", "play", *map(str, args)],
                            stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0 and "Traceback" not in err, err


def _cyclic_match(played: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Indices into ``original`` of each row of ``played``, which must be a contiguous,
    looping stretch of it."""
    first = np.flatnonzero((original == played[0]).all(axis=1))
    assert len(first) == 1, "the first sample played is not (uniquely) in the file"
    index = (first[0] + np.arange(len(played))) % len(original)
    np.testing.assert_array_equal(played, original[index])
    return index


@pytest.mark.parametrize("kind", ["h5", "xdf"])
def test_record_captures_the_player_with_its_markers(recording, tmp_path, unique_id, kind):
    source = recording
    if kind == "xdf":
        source = write_xdf(tmp_path / "rec.xdf", read_recording(recording))
    out = tmp_path / "captured.h5"
    with _player(source, "--name", unique_id, "--loop"):
        result = CliRunner().invoke(main, [
            "record", f"lsl://name={unique_id}?timeout=10", "-o", str(out), "--duration",
            "3.5", "--quiet", "--markers", f"lsl://name={unique_id}-markers?timeout=10"])
    assert result.exit_code == 0, result.output
    captured, original = read_recording(out), read_recording(recording)
    assert captured.meta["device"]["channel_names"] == ["flexor", "extensor", "thumb"]
    assert captured.meta["device"]["manufacturer"] == "acme"
    index = _cyclic_match(captured.emg, original.emg)
    # 3.5 s of a 3 s loop: every event of the file comes by at least once, on its sample
    events = _file_events(recording)
    assert len(captured.markers) >= sum(map(len, events.values()))
    for t, text in captured.markers:
        k = int(np.argmin(np.abs(captured.time - t)))
        if 0 < k < len(index) - 1:  # a marker before the first sample lands on it
            assert text in events.get(int(index[k]), []), (t, text, index[k])


def test_mne_lsl_stream_reads_the_player(recording, unique_id):
    pytest.importorskip("mne_lsl", reason="mne-lsl (the test extra) is not installed")
    import time

    from mne_lsl.stream import StreamLSL

    original = read_recording(recording).emg
    with _player(recording, "--name", unique_id, "--loop"):
        stream = StreamLSL(bufsize=2.0, name=unique_id).connect(timeout=10)
        try:
            time.sleep(1.2)
            data, stamps = stream.get_data(winsize=1.0)
            assert stream.ch_names == ["flexor", "extensor", "thumb"]
            assert stream.get_channel_types() == ["emg"] * 3
            assert stream.info["sfreq"] == _RATE
            assert [int(ch["unit_mul"]) for ch in stream.info["chs"]] == [-6] * 3  # µV
        finally:
            stream.disconnect()
    assert data.shape == (3, int(_RATE))
    np.testing.assert_allclose(np.diff(stamps), 1 / _RATE, rtol=1e-6)
    _cyclic_match(data.T.astype(np.float32), original)


def test_record_captures_the_mne_lsl_player(tmp_path, unique_id):
    pytest.importorskip("mne_lsl", reason="mne-lsl (the test extra) is not installed")
    import mne
    from mne_lsl.player import PlayerLSL

    chunk = 10
    data = np.random.default_rng(2).standard_normal((3, 1000)) * 1e-5
    raw = mne.io.RawArray(data, mne.create_info(["a", "b", "c"], _RATE, "emg"),
                          verbose="error")
    raw.set_annotations(mne.Annotations([0.5, 1.2], [0.0, 0.0], ["cue1", "cue2"]))
    out = tmp_path / "mne.h5"
    player = PlayerLSL(raw, chunk_size=chunk, name=unique_id, source_id=unique_id,
                       annotations=True, annotations_encoding="string").start()
    try:
        result = CliRunner().invoke(main, [
            "record", f"lsl://name={unique_id}?timeout=10", "-o", str(out), "--duration",
            "2.5", "--quiet", "--markers", f"lsl://name={unique_id}-annotations?timeout=10"])
    finally:
        player.stop()
    assert result.exit_code == 0, result.output
    rec = read_recording(out)
    assert rec.meta["device"]["channel_names"] == ["a", "b", "c"]
    index = _cyclic_match(rec.emg, data.T.astype(np.float32))
    # 2.5 s of a 2 s loop holds at least one of each; MNE-LSL stamps a chunk when it pushes
    # it (its documentation), so an annotation lands within a chunk of its onset
    assert {text for _, text in rec.markers} == {"cue1", "cue2"}
    onsets = {"cue1": 250, "cue2": 600}
    for t, text in rec.markers:
        k = int(np.argmin(np.abs(rec.time - t)))
        if 0 < k < len(index) - 1:
            assert abs(int(index[k]) - onsets[text]) <= chunk, (text, index[k])
