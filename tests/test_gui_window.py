"""The live demo window, offscreen, on a real simulated stream and a real ONNX model.

What is checked: gesture events reach the readout and the history, the readout names a
class the model has (and, with the shipped model, a gesture the simulated user really
performed), the window renders something that is not blank, the personalization buttons
drive the pipeline's adaptation thread, and closing leaves no thread or process behind.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from PyQt6 import QtGui, QtWidgets  # noqa: E402

from emgstream.pipeline import PipelineConfig, default_model_path  # noqa: E402
from emgstream.sources import DEMO_URI, open_source  # noqa: E402

pytestmark = pytest.mark.gui

# A sim whose gestures change quickly, so a few seconds see several events.
_SIM = "sim://?hold=1.0&rest=0.6"


@pytest.fixture(scope="module")
def qapp():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication(["test"])


@pytest.fixture(scope="module")
def sim_classes() -> list[str]:
    return open_source(_SIM).class_names


@pytest.fixture(scope="module")
def test_model(sim_classes):
    pytest.importorskip("torch", reason="needs the adapt extra (torch)")
    from emgstream import train
    return train.make_test_model(n_channels=16, rate=2000.0, classes=sim_classes)


def pump(app, seconds: float, until=None) -> bool:
    """Run Qt's event loop for ``seconds`` or until ``until()`` is true; True if it was."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        if until is not None and until():
            return True
        time.sleep(0.002)
    return until is not None and until()


def open_window(app, model, uri=_SIM, **kwargs):
    from apps.live_demo import LiveDemoWindow

    # threshold 0: a random-weight model is rarely confident, and these tests are about
    # events reaching the screen, not about the model's accuracy
    config = kwargs.pop("config", PipelineConfig(threshold=0.0, debounce=2))
    window = LiveDemoWindow(model, uri, config=config, **kwargs)
    window.show()
    return window


def child_processes() -> set[int]:
    """Live child processes of this process, from /proc: multiprocessing's and plain
    subprocesses, except multiprocessing's resource tracker (one per interpreter, started
    by the first spawn and kept until the interpreter exits; it holds nothing of ours)."""
    pids = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        pids.update(int(p) for p in (task / "children").read_text().split())
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if state != "Z" and b"multiprocessing.resource_tracker" not in command:
            alive.add(pid)
    return alive


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (the adapter is the pipeline process's child)."""
    found, todo = set(), [pid]
    while todo:
        task_dir = Path(f"/proc/{todo.pop()}/task")
        if not task_dir.exists():
            continue
        for task in task_dir.iterdir():
            try:
                children = [int(p) for p in (task / "children").read_text().split()]
            except FileNotFoundError:
                continue
            new = set(children) - found
            found |= new
            todo.extend(new)
    return found


def performed_labels(uri: str, n_samples: int) -> np.ndarray:
    """What the simulated user of ``uri`` performs at each of its first ``n_samples`` samples
    (the pipeline's source runs in another process; the same user, unpaced, performs the
    same gestures at the same sample indices)."""
    source = open_source(uri + "&realtime=0")
    labels = []
    with source:
        while sum(map(len, labels)) < n_samples:
            source.read(1.0)
            labels.append(source.last_labels.copy())
    return np.concatenate(labels)[:n_samples]


def performed_recently(labels: np.ndarray, class_names, last: int, samples: int) -> set[str]:
    """Class names performed at the sample indices ``[last - samples, last]``."""
    return {class_names[i] for i in np.unique(labels[max(0, last - samples):last + 1])}


@pytest.fixture(scope="module")
def running_window(qapp, test_model, tmp_path_factory):
    window = open_window(qapp, test_model, record_dir=tmp_path_factory.mktemp("rec"))
    assert window.pipeline is not None, window.statusBar().currentMessage()
    yield window
    window.close()


def test_events_reach_the_readout_and_history(qapp, running_window):
    w = running_window
    assert pump(qapp, 15.0, until=lambda: w.events_received >= 2), \
        f"no gesture events in 15 s: {w.pipeline.stats.summary()}"
    assert w.first_event_s is not None and w.first_event_s > 0
    pump(qapp, 0.2)
    names = list(w.pipeline.model.class_names)
    shown = w.readout.gesture_text
    assert shown in names
    # the history lists the events, newest first, with their latencies
    history = w.history.gestures()
    assert history and all(g in names for g in history)
    latency_cell = w.history.table.item(0, 3).text()
    assert latency_cell.endswith(" ms") and float(latency_cell.split()[0]) >= 0
    # the probability bars show the current probabilities (one per class)
    snap = w.pipeline.snapshot()
    assert len(w.readout._bars) == len(names)
    assert sum(b.value() for b in w.readout._bars) == pytest.approx(100, abs=len(names))
    assert snap.probabilities.shape == (len(names),)


def test_health_panel_shows_live_numbers(qapp, running_window):
    w = running_window
    pump(qapp, 1.0)
    rate = w.health.values["rate"].text()
    assert rate.endswith("(nominal 2,000)")
    effective = float(rate.split()[0].replace(",", ""))
    assert 1500 < effective < 2500
    assert "ms" in w.health.values["latency"].text()
    assert w.fps > 5  # frames really are redrawn from the timer (measured: bench_gui.py)


def test_screenshot_is_a_real_render(qapp, running_window, tmp_path):
    w = running_window
    pump(qapp, 0.5)
    path = tmp_path / "live_demo.png"
    assert w.grab().save(str(path))
    assert path.stat().st_size > 10_000
    image = QtGui.QImage(str(path))
    assert image.width() >= 800 and image.height() >= 500
    # not uniform: many distinct colours across the traces, ring, spectrum and panels
    ptr = image.convertToFormat(QtGui.QImage.Format.Format_RGB32).constBits()
    ptr.setsize(image.width() * image.height() * 4)
    pixels = np.frombuffer(ptr, dtype=np.uint32)
    assert np.unique(pixels).size > 50
    # and the traces view itself is not blank
    traces = w.traces.grab().toImage().convertToFormat(QtGui.QImage.Format.Format_RGB32)
    bits = traces.constBits()
    bits.setsize(traces.width() * traces.height() * 4)
    assert np.unique(np.frombuffer(bits, dtype=np.uint32)).size > 5


def test_record_button_writes_the_standard_hdf5(qapp, running_window):
    from emgstream.io import read_recording

    w = running_window
    w.source_panel.record_button.click()
    assert w.recording_path is not None
    path = w.recording_path
    pump(qapp, 1.0)
    w.source_panel.record_button.click()
    assert w.recording_path is None and w.last_recording == path
    rec = read_recording(path)
    assert rec.n_channels == 16 and rec.sample_rate == 2000.0
    assert 1000 < rec.emg.shape[0] < 6000  # about a second of raw samples
    assert np.all(np.diff(rec.time) > 0)


def test_a_recording_replays_through_the_window(qapp, test_model, running_window):
    path = running_window.last_recording
    if path is None:
        pytest.skip("needs the recording of test_record_button_writes_the_standard_hdf5")
    window = open_window(qapp, test_model, uri=f"replay://{path}?loop=1",
                         record_dir=path.parent)
    try:
        assert window.pipeline is not None, window.statusBar().currentMessage()
        assert window.pipeline.info.kind == "replay"
        assert pump(qapp, 10.0, until=lambda: window.pipeline.stats.hops > 10)
        assert "replay://" in window.source_panel.current_label.text()
    finally:
        window.close()


def test_spectrum_shows_the_mains_the_notch_removes(qapp, test_model, tmp_path):
    """On a replayed stream with strong 50 Hz mains, the window's spectrum draws the raw
    stream peaking at 50 Hz and the filtered stream (what the model sees) without it."""
    from emgstream.io import RecordingWriter
    from emgstream.sources import StreamInfo

    rate, n = 2000.0, 4000
    t = np.arange(n) / rate
    emg = (np.random.default_rng(6).normal(0, 10, (n, 16))
           + 200 * np.sin(2 * np.pi * 50.0 * t)[:, None]).astype(np.float32)
    path = tmp_path / "mains.h5"
    with RecordingWriter(path, StreamInfo("mains", 16, rate)) as writer:
        writer.append(emg, 5.0 + t)
    window = open_window(qapp, test_model, uri=f"replay://{path}?loop=1", record_dir=tmp_path)
    try:
        assert window.pipeline is not None, window.statusBar().currentMessage()
        assert "mains" in window.spectrum._mains_lines[0].label.format
        # a full second in the snapshot, then a spectrum update (every few frames)
        assert pump(qapp, 10.0, until=lambda: window.pipeline.stats.samples > 2 * rate)
        frames = window.frames_drawn
        assert pump(qapp, 5.0, until=lambda: window.frames_drawn > frames + 20)
        freqs, raw_log = window.spectrum.raw_curve.getData()  # log10 power (log axis)
        _, filtered_log = window.spectrum.filtered_curve.getData()
        at_mains = np.argmin(np.abs(freqs - 50.0))
        assert np.argmax(raw_log) == at_mains
        assert np.argmax(filtered_log) != at_mains
        assert filtered_log[at_mains] < raw_log[at_mains] - 2
    finally:
        window.close()


@pytest.mark.slow
def test_personalization_buttons_drive_the_adaptation_thread(qapp, running_window, tmp_path):
    pytest.importorskip("torch", reason="needs the adapt extra (torch)")
    w = running_window
    p = w.personalization
    p.start_button.click()
    assert w.pipeline.adaptation_running
    assert not p.start_button.isEnabled() and p.stop_button.isEnabled()

    def windows_seen() -> int:
        stats = w.pipeline.stats.adaptation
        return 0 if stats is None else stats.windows_seen

    assert pump(qapp, 60.0, until=lambda: windows_seen() > 0)  # the adapter imports torch
    first = windows_seen()
    assert pump(qapp, 30.0, until=lambda: windows_seen() > first)
    pump(qapp, 0.5)
    assert p.progress["windows"].text() != "0"
    assert p.progress["state"].text() == "adapting"
    p.stop_button.click()
    assert not w.pipeline.adaptation_running
    assert p.start_button.isEnabled()
    # save for a user: the adapter process writes the file while the window stays
    # responsive. The adapter (the pipeline process's child) is held stopped (SIGSTOP) so
    # the save cannot be done yet when save_personalized returns: a blocking save would
    # hang here instead.
    p.user_edit.setText("tester")
    adapter_pids = descendants(w.pipeline.pid)
    assert adapter_pids
    target = tmp_path / "tester.emgm"
    for pid in adapter_pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        future = w.save_personalized(target, "tester")
        assert future is not None and not future.done()
        assert "saving" in p.message.text() and not p.save_button.isEnabled()
        frames = w.frames_drawn
        pump(qapp, 0.5)
        assert w.frames_drawn > frames + 5  # the GUI thread kept redrawing
        assert not future.done() and not target.exists()
    finally:
        for pid in adapter_pids:
            os.kill(pid, signal.SIGCONT)
    assert pump(qapp, 60.0, until=lambda: "saved to" in p.message.text()), p.message.text()
    assert str(target) in p.message.text() and target.is_file()
    assert p.save_button.isEnabled() and future.result() == target
    # a save that fails says why in the panel
    (tmp_path / "a-file").write_text("not a folder")
    w.save_personalized(tmp_path / "a-file" / "x.emgm", "tester")
    assert pump(qapp, 60.0, until=lambda: "save failed" in p.message.text())
    assert p.save_button.isEnabled()
    # resume, then reset: the source model is back in use and the adapter starts over
    p.start_button.click()
    before = windows_seen()
    version = w.pipeline.stats.model_version
    p.reset_button.click()
    assert pump(qapp, 5.0, until=lambda: w.pipeline.stats.model_version > version)
    assert "source" in p.message.text()
    assert pump(qapp, 10.0, until=lambda: windows_seen() < before)
    # reset while paused: the panel shows zero counts and the source model at once
    assert pump(qapp, 30.0, until=lambda: windows_seen() > 0)
    p.stop_button.click()
    pump(qapp, 0.5)
    assert p.progress["windows"].text() != "0"
    p.reset_button.click()
    pump(qapp, 0.4)  # the panel refreshes every few frames
    assert p.progress["windows"].text() == "0"
    assert p.progress["state"].text() == "stopped (source model)"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_closing_leaves_no_thread_or_process(qapp, test_model, tmp_path):
    threads_before = set(threading.enumerate())
    children_before = child_processes()
    window = open_window(qapp, test_model, record_dir=tmp_path)
    assert window.pipeline is not None
    assert pump(qapp, 10.0, until=lambda: window.pipeline.stats.hops > 5)
    window.source_panel.record_button.click()  # a recorder thread
    window.personalization.start_button.click()  # the adapter's process and its thread
    pump(qapp, 0.3)
    assert window.pipeline.adaptation_running, window.statusBar().currentMessage()
    assert set(threading.enumerate()) - threads_before  # the pipeline process's reader
    pipeline_pid = window.pipeline.pid
    assert child_processes() - children_before == {pipeline_pid}
    below = descendants(pipeline_pid)
    assert below  # the adapter, the pipeline process's child
    window.close()
    assert window.pipeline is None
    pump(qapp, 0.2)
    left = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert not left, f"threads left after close: {left}"
    children = child_processes() - children_before
    assert not children, f"processes left after close: {children}"
    assert pipeline_pid not in {p.pid for p in multiprocessing.active_children()}
    assert not [pid for pid in below | {pipeline_pid} if Path(f"/proc/{pid}").exists()]
    assert window.last_recording is not None and window.last_recording.is_file()


def test_a_source_that_cannot_open_is_reported_not_fatal(qapp, test_model, tmp_path):
    window = open_window(qapp, test_model, uri="sim://?channels=8", record_dir=tmp_path)
    try:
        assert window.pipeline is None
        message = window.statusBar().currentMessage()
        assert "8 channels" in message and "16 channels" in message
        pump(qapp, 0.2)  # the timer keeps running without a pipeline
        # controls without a stream say so instead of raising (PyQt6 aborts on that)
        for button in (window.personalization.start_button,
                       window.personalization.reset_button,
                       window.source_panel.record_button):
            button.click()
        assert "connect a source" in window.personalization.message.text()
        assert "no stream" in window.statusBar().currentMessage()
        assert not window.source_panel.record_button.isChecked()
        window.set_source(_SIM)  # and the picker can then start a good one
        assert window.pipeline is not None
    finally:
        window.close()


def test_scan_lists_lsl_streams_and_connect_switches_source(qapp, test_model, tmp_path,
                                                           unique_id):
    import pylsl

    info = pylsl.StreamInfo(unique_id, "EMG", 16, 2000.0, pylsl.cf_float32, unique_id)
    outlet = pylsl.StreamOutlet(info)
    stop = threading.Event()

    def push() -> None:  # 2 kHz of noise in 20 ms chunks
        rng = np.random.default_rng(0)
        while not stop.is_set():
            outlet.push_chunk(rng.normal(0, 20, (40, 16)).astype(np.float32).tolist())
            time.sleep(0.02)

    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    window = open_window(qapp, test_model, record_dir=tmp_path)
    try:
        combo = window.source_panel.combo
        window.source_panel.refresh_button.click()
        found = lambda: any(unique_id in combo.itemText(i) for i in range(combo.count()))
        assert pump(qapp, 15.0, until=found), [combo.itemText(i) for i in range(combo.count())]
        assert window._scan is None  # the scan's worker thread is gone
        index = next(i for i in range(combo.count()) if unique_id in combo.itemText(i))
        combo.setCurrentIndex(index)
        window.source_panel.connect_button.click()
        assert window.pipeline is not None, window.statusBar().currentMessage()
        assert window.pipeline.info.kind == "lsl"
        assert pump(qapp, 10.0, until=lambda: window.pipeline.stats.hops > 3)
        assert unique_id in window.source_panel.current_label.text()
    finally:
        window.close()
        stop.set()
        pusher.join()


@pytest.mark.slow
def test_shipped_model_shows_the_gesture_being_performed(qapp):
    """With the shipped (trained) model the window shows the gestures the demo's simulated
    wearer performs (user 0 on a session the model never trained on): most gestures
    performed are recognised, the events' gestures (rest aside, which is always near) were
    performed around their windows, and the readout showed them."""
    path = default_model_path()
    if path is None:
        pytest.skip("the shipped model models/default.emgm is not there")
    from emgstream.modelfile import load_model_file

    model = load_model_file(path)
    uri = DEMO_URI
    window = open_window(qapp, model, uri=uri, config=PipelineConfig())
    try:
        events, shown = [], set()
        window.pipeline.subscribe(events.append)  # the same events the window queues
        deadline = time.monotonic() + 40.0
        while time.monotonic() < deadline:
            pump(qapp, 0.05)
            shown.add(window.readout.gesture_text)
        names = open_source(uri).class_names
        moves = [e for e in events if e.gesture != "rest"]
        assert len(moves) >= 3, f"{len(events)} events, all rest"
        labels = performed_labels(uri, max(e.sample_index for e in moves) + 1)
        rate = window.pipeline.info.sample_rate
        matched = [e.gesture in performed_recently(labels, names, e.sample_index, int(1.5 * rate))
                   for e in moves]
        performed = {names[c] for c in np.unique(labels)} - {"rest"}
        recognised = {e.gesture for e, ok in zip(moves, matched) if ok}
        # measured in these 40 s: the 200 ms model 17 events, 71 % matched; the 400 ms model
        # before it 14, 86 %. Over 120 s of the same stream both match 72-73 % (offline
        # replay), so 40 s (~15 events, binomial sd ~0.11) can only ask for a clear majority;
        # the raw-token model before them showed 4 gesture events in 40 s
        assert np.mean(matched) >= 0.6, f"{np.mean(matched):.0%} of the gestures matched"
        assert len(recognised) >= 0.7 * len(performed), (
            f"recognised {sorted(recognised)} of {sorted(performed)}")
        assert {e.gesture for e in moves} & shown  # and they were on screen
        assert window.events_received >= len(events) - 1
    finally:
        window.close()


def test_a_killed_pipeline_process_is_reported_and_the_window_keeps_drawing(qapp, test_model,
                                                                            tmp_path):
    window = open_window(qapp, test_model, record_dir=tmp_path)
    try:
        assert window.pipeline is not None, window.statusBar().currentMessage()
        assert pump(qapp, 10.0, until=lambda: window.pipeline.stats.hops > 5)
        pid = window.pipeline.pid
        os.kill(pid, signal.SIGKILL)
        stopped = lambda: "killed by signal 9" in window.statusBar().currentMessage()
        assert pump(qapp, 3.0, until=stopped), window.statusBar().currentMessage()
        assert "stream stopped" in window.statusBar().currentMessage()
        frames = window.frames_drawn
        pump(qapp, 0.5)
        assert window.frames_drawn > frames + 5  # the GUI thread never waits for the dead
        window.personalization.start_button.click()  # says why instead of raising
        assert "killed by signal 9" in window.statusBar().currentMessage()
        window.set_source(_SIM)  # and a new pipeline process can take its place
        assert window.pipeline is not None and window.pipeline.pid != pid
        assert pump(qapp, 10.0, until=lambda: window.pipeline.stats.hops > 5)
    finally:
        t0 = time.monotonic()
        window.close()
    assert time.monotonic() - t0 < 10.0
