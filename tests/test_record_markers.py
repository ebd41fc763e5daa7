"""``record --markers``: LSL marker streams recorded beside the signal, on its clock; the
events of ``run --lsl-markers`` (``LSLMarkerOutlet``) come back whole."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pylsl
from click.testing import CliRunner

from emgstream.cli import main
from emgstream.io import read_recording
from emgstream.pipeline import GestureEvent, LSLMarkerOutlet

_CLASSES = ["rest", "fist", "open_hand", "pinch_index", "pinch_middle", "pinch_ring",
            "pinch_pinky", "point", "thumbs_up", "wrist_flexion", "wrist_extension",
            "radial_deviation", "ulnar_deviation"]


def _push_events(outlet: LSLMarkerOutlet, sent: list, stop: threading.Event) -> None:
    rng = np.random.default_rng(4)
    k = 0
    while not stop.is_set():
        p = rng.dirichlet(np.ones(len(_CLASSES)))
        best = int(p.argmax())
        now = pylsl.local_clock()
        event = GestureEvent(_CLASSES[best], best, float(p[best]), tuple(map(float, p)),
                             sample_index=1000 * k, timestamp=now - 0.01, latency=0.01,
                             emitted=now)
        outlet(event)
        sent.append(event)
        k += 1
        time.sleep(0.1)


def test_run_lsl_markers_round_trip_through_record(tmp_path, unique_id):
    out = tmp_path / "with-markers.h5"
    sent: list[GestureEvent] = []
    stop = threading.Event()
    with LSLMarkerOutlet(unique_id, source_id=unique_id) as outlet:
        pusher = threading.Thread(target=_push_events, args=(outlet, sent, stop))
        result = None
        try:
            pusher.start()
            result = CliRunner().invoke(main, [
                "record", "sim://?channels=2&rate=500", "-o", str(out), "--duration", "1.5",
                "--quiet", "--markers", f"lsl://name={unique_id}?timeout=5"])
        finally:
            stop.set()
            pusher.join()
    assert result.exit_code == 0, result.output
    assert f"markers of '{unique_id}'" in result.output
    rec = read_recording(out)
    assert len(rec.markers) >= 8
    by_index = {e.sample_index: e for e in sent}
    for t, text in rec.markers:
        event = json.loads(text)
        original = by_index[event["sample_index"]]
        assert text == original.to_json()  # whole: 13 probabilities make it > 255 bytes
        # the same clock: the marker's time is the event's stamp plus the loopback offset
        assert abs(t - original.timestamp) < 1e-3
    assert max(len(text.encode()) for _, text in rec.markers) > 255


def test_marker_stream_must_carry_strings(tmp_path, unique_id):
    info = pylsl.StreamInfo(unique_id, "Markers", 1, 0.0, "float32", unique_id)
    outlet = pylsl.StreamOutlet(info)  # noqa: F841 (alive while recording)
    result = CliRunner().invoke(main, ["record", "sim://?channels=2", "-o",
                                       str(tmp_path / "x.h5"), "--duration", "0.2",
                                       "--markers", f"lsl://name={unique_id}?timeout=3"])
    assert result.exit_code == 1
    assert f"LSL stream '{unique_id}' (name='{unique_id}') carries numbers; expected a " \
           f"marker stream of strings" in result.output
    result = CliRunner().invoke(main, ["record", "sim://?channels=2", "-o",
                                       str(tmp_path / "y.h5"), "--markers", "sim://"])
    assert result.exit_code == 1
    assert "a marker stream is an lsl:// URI (e.g. lsl://type=Markers), got 'sim://'" \
        in result.output
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "y.h5").exists()


def test_a_marker_longer_than_a_row_is_cut_with_a_warning(tmp_path, unique_id, caplog):
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(unique_id, "Markers", 1, 0.0, "string",
                                                 unique_id))
    long_text = "é" * 1500  # 3000 bytes of UTF-8
    stop = threading.Event()

    def push():
        while not stop.wait(0.2):
            outlet.push_sample([long_text])

    pusher = threading.Thread(target=push)
    pusher.start()
    try:
        result = CliRunner().invoke(main, [
            "record", "sim://?channels=2&rate=500", "-o", str(tmp_path / "long.h5"),
            "--duration", "1", "--quiet", "--markers", f"lsl://name={unique_id}?timeout=3"])
    finally:
        stop.set()
        pusher.join()
    assert result.exit_code == 0, result.output
    markers = read_recording(tmp_path / "long.h5").markers
    assert markers and all(text == "é" * 511 for _, text in markers)  # 1022 bytes fit
    assert "was cut to 1022 bytes" in caplog.text
