"""The live demo window.

Processes and threads: the pipeline (acquisition, inference, and the adapter's own child)
runs in a process of its own (:class:`emgstream.pipeline.PipelineProcess`): Qt and
pyqtgraph hold the GIL while they paint, and in one process the inference thread waited for
the painter (latency p99 1.76x headless, ``benchmarks/bench_gui.py``). Gesture events
arrive in the pipeline process's reader thread; the callback only puts them on a
:class:`queue.SimpleQueue`. A ``QTimer`` in the GUI thread drains that queue and redraws
from ``PipelineProcess.snapshot()`` (a copy; a round trip under 2 ms), so the
GUI never makes the pipeline's threads wait.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import queue
import sys
import time
from pathlib import Path

from PyQt6 import QtCore, QtWidgets

from emgstream._extras import missing_extra
from emgstream.modelfile import ModelFile, load_model_file
from emgstream.pipeline import (PipelineConfig, PipelineProcess, PipelineProcessError,
                                personal_model_path)

from ._panels import (CpuMeter, EventHistory, GestureReadout, HealthPanel,
                      PersonalizationPanel, SourcePanel)
from ._views import BandRmsView, SpectrumView, TracesView

__all__ = ["LiveDemoWindow"]

logger = logging.getLogger(__name__)

_FRAME_MS = 28  # 35 frames/s asked: >= 30 achieved under load
# Frames between updates of the slower views: traces and the readout move every frame;
# the RMS ring, the health numbers and the spectrum (Welch, the costliest) need not.
_RING_EVERY = 3
_HEALTH_EVERY = 8
_SPECTRUM_EVERY = 8


class _WorkDone:
    """Queued by a background worker (device scan, model save) when it finishes; the GUI
    thread's timer takes it off the queue and calls ``slot(future)``."""

    def __init__(self, slot, future):
        self.slot = slot
        self.future = future


def _list_devices() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``([(lsl name, source_id)], [(serial device, description)])`` on this machine."""
    import pylsl
    from serial.tools import list_ports
    lsl = [(s.name(), s.source_id()) for s in pylsl.resolve_streams(wait_time=1.0)
           if s.channel_format() != pylsl.cf_string]
    ports = [(p.device, p.description) for p in list_ports.comports()]
    return lsl, ports


class LiveDemoWindow(QtWidgets.QMainWindow):
    """Traces, RMS ring, spectrum, gesture readout, health, personalization, source picker.

    Parameters
    ----------
    model : ModelFile
        The model the pipeline runs (and adaptation starts from).
    source_uri : str
        The source to start with (see :func:`emgstream.sources.open_source`).
    config : PipelineConfig, optional
        Smoothing, threshold, debounce and buffers of every pipeline the window starts.
    record_dir : path
        Where the record button writes ``<time>.h5`` files.
    model_path : path, optional
        The source model's file: offline calibration runs on it (in a subprocess), and a
        user's personalized model is saved under its key (:func:`personal_model_path`).
    user : str
        The user name the personalization panel starts with.
    mains : float, optional
        Mains frequency marked on the spectrum; default: the model's notch, else 50 Hz.
    started_at : float, optional
        ``time.perf_counter()`` when the program started, so that :attr:`first_event_s`
        (time to the first gesture on screen) includes start-up; default: now.

    Attributes
    ----------
    pipeline : PipelineProcess or None
        The running pipeline, in its own process (None when a source failed to open).
    frames_drawn : int
        Redraws so far (the frame rate over the last second is :attr:`fps`).
    events_received : int
        Gesture events taken from the pipeline so far.
    first_event_s : float or None
        Seconds from start (or from the last source switch) to the first gesture event
        on screen.
    """

    def __init__(self, model: ModelFile, source_uri: str, *,
                 config: PipelineConfig | None = None, record_dir: str | Path = "recordings",
                 model_path: str | Path | None = None, user: str = "",
                 mains: float | None = None, started_at: float | None = None, parent=None):
        super().__init__(parent)
        self.setWindowTitle("emgstream live demo")
        self._model = model
        self._config = PipelineConfig() if config is None else config
        self._record_dir = Path(record_dir)
        self._model_path = None if model_path is None else Path(model_path)
        self._mains = mains or model.preprocessing.notch or 50.0
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._cpu = CpuMeter()
        self._pipeline_cpu: CpuMeter | None = None
        self._frame_times: collections.deque[float] = collections.deque()
        self.frames_drawn = 0
        self.pipeline: PipelineProcess | None = None
        self.recording_path: Path | None = None
        self.last_recording: Path | None = None
        self.events_received = 0
        self._scan: concurrent.futures.ThreadPoolExecutor | None = None
        self._save: concurrent.futures.ThreadPoolExecutor | None = None
        self._save_future: concurrent.futures.Future | None = None
        self._calibration: QtCore.QProcess | None = None
        self._calibration_tail = ""
        self._t_started = time.perf_counter() if started_at is None else started_at
        self.first_event_s: float | None = None
        self._build(source_uri)
        self.personalization.user_edit.setText(user)
        self._check_calibration_available()
        self._timer = QtCore.QTimer(self)
        self._timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._redraw)
        self._timer.start(_FRAME_MS)
        self.set_source(source_uri)

    # -- layout -----------------------------------------------------------------------------
    def _build(self, source_uri: str) -> None:
        self.traces = TracesView(["EMG1"])
        self.band = BandRmsView(["EMG1"])
        self.spectrum = SpectrumView(1000.0, self._mains)
        self.readout = GestureReadout([])
        self.history = EventHistory()
        self.health = HealthPanel()
        self.personalization = PersonalizationPanel()
        self.source_panel = SourcePanel(source_uri)

        signals = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        signals.addWidget(self.traces)
        lower = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        lower.addWidget(self.band)
        lower.addWidget(self.spectrum)
        lower.setSizes([300, 500])
        signals.addWidget(lower)
        signals.setSizes([520, 300])

        middle = QtWidgets.QWidget()
        middle_layout = QtWidgets.QVBoxLayout(middle)
        middle_layout.setContentsMargins(0, 0, 0, 0)
        middle_layout.addWidget(self.readout)
        middle_layout.addWidget(self.history, 1)

        right = QtWidgets.QWidget()
        right_layout = QtWidgets.QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.source_panel)
        right_layout.addWidget(self.health)
        right_layout.addWidget(self.personalization)
        right_layout.addStretch(1)

        central = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        central.addWidget(signals)
        central.addWidget(middle)
        central.addWidget(right)
        central.setSizes([760, 300, 340])
        self.setCentralWidget(central)
        self.statusBar().showMessage("starting…")
        self.resize(1440, 860)

        p = self.personalization
        p.start_clicked.connect(self._start_adaptation)
        p.stop_clicked.connect(self._stop_adaptation)
        p.reset_clicked.connect(self._reset_adaptation)
        p.save_clicked.connect(self._save_personalized)
        p.calibrate_clicked.connect(self._calibrate)
        s = self.source_panel
        s.connect_clicked.connect(self.set_source)
        s.refresh_clicked.connect(self.scan_devices)
        s.record_toggled.connect(self._toggle_recording)

    # -- pipeline lifecycle -------------------------------------------------------------------
    def set_source(self, uri: str) -> None:
        """Stop the current pipeline (if any) and start one on ``uri``."""
        if self.pipeline is not None:
            self._t_started = time.perf_counter()
            self.first_event_s = None
        self._stop_pipeline()
        try:
            pipeline = PipelineProcess(uri, self._model, self._config)
            pipeline.subscribe(self._events.put)  # runs in its reader thread: queue only
            pipeline.start()
        except Exception as err:  # a bad URI or device must not kill the window
            logger.error("cannot start %s: %s", uri, err)
            self.statusBar().showMessage(f"cannot open {uri}: {err}")
            self.source_panel.set_current(f"{uri} (failed: {err})")
            return
        self.pipeline = pipeline
        self._pipeline_cpu = CpuMeter(lambda: pipeline.cpu_seconds)
        info = pipeline.info
        self.traces.set_channels(info.channel_names, info.units)
        self.band.set_channels(info.channel_names, info.units)
        self.spectrum.set_rate(info.sample_rate, self._mains)
        self.readout.set_classes(self._model.class_names)
        self.readout.set_gesture(None, None)
        self.source_panel.set_current(uri)
        self.personalization.set_running(False)
        who = self._model.provenance.get("personalized_for")
        self.statusBar().showMessage(
            f"{info.name}: {info.n_channels} channels at {info.sample_rate:g} Hz, "
            f"model {self._model_path.name if self._model_path else 'in memory'}"
            f"{f', personalized for {who}' if who else ''}")

    def _stop_pipeline(self) -> None:
        if self.pipeline is None:
            return
        self._finish_save()  # the adapter ends with the pipeline: let a save complete first
        if self.recording_path is not None:
            self._toggle_recording(False)
        self.pipeline.stop()
        self.pipeline = self._pipeline_cpu = None

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._timer.stop()
        self._stop_calibration()
        self._stop_pipeline()
        if self._scan is not None:
            self._scan.shutdown(wait=True)
            self._scan = None
        super().closeEvent(event)

    # -- redraw --------------------------------------------------------------------------------
    @property
    def fps(self) -> float:
        """Frames per second over the last second of redraws."""
        times = self._frame_times
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def _redraw(self) -> None:
        now = time.perf_counter()
        self._frame_times.append(now)
        while self._frame_times[0] < now - 1.0:
            self._frame_times.popleft()
        self.frames_drawn += 1
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, _WorkDone):
                event.slot(event.future)
                continue
            self.events_received += 1
            if self.first_event_s is None:
                self.first_event_s = now - self._t_started
            self.history.add(event.gesture or "uncertain", event.confidence, event.latency)
        if self.pipeline is None:
            return
        try:
            self._draw(self.pipeline)
        except PipelineProcessError as err:  # a late or dead pipeline process: say so
            self.statusBar().showMessage(f"stream stopped: {self.pipeline.error or err}")

    def _draw(self, pipeline: PipelineProcess) -> None:
        snap = pipeline.snapshot()
        frame = self.frames_drawn
        if snap.samples.shape[0] >= 2:
            self.traces.set_data(snap.samples, snap.timestamps)
            if frame % _SPECTRUM_EVERY == 0:
                self.spectrum.set_data(snap.raw, snap.samples)
        if frame % _RING_EVERY == 0:
            self.band.set_rms(snap.rms)
        self.readout.set_gesture(snap.gesture, snap.confidence if snap.gesture else None)
        self.readout.set_probabilities(snap.probabilities)
        if frame % _HEALTH_EVERY == 0:
            stats = snap.stats
            self.health.set_values(
                rate=stats.effective_rate, nominal_rate=snap.sample_rate,
                dropped=stats.dropped_samples, backlog=stats.source_backlog,
                latency_p50=stats.latency_p50, latency_p99=stats.latency_p99,
                cpu_percent=self._cpu.update(), pipeline_cpu_percent=self._pipeline_cpu.update(),
                fps=self.fps)
            self._show_adaptation(stats.adaptation)
            if pipeline.error is not None and not pipeline.is_running:
                self.statusBar().showMessage(f"stream stopped: {pipeline.error}")

    def _show_adaptation(self, adaptation) -> None:
        """``adaptation``: the pipeline's :class:`emgstream.adapt.OnlineStats`, or None."""
        running = self.pipeline.adaptation_running
        if adaptation is None:
            self.personalization.set_progress(
                state="starting…" if running else "off (source model)", windows=0,
                accepted=0, acceptance=None, updates=0, agreement=None, rollbacks=0)
            return
        # counts restart at zero on reset, when the source model is back in use
        adapted = adaptation.teacher_updates > 0
        self.personalization.set_progress(
            state="adapting" if running else
            "stopped (adapted model in use)" if adapted else "stopped (source model)",
            windows=adaptation.windows_seen, accepted=adaptation.pseudo_labels_accepted,
            acceptance=adaptation.acceptance, updates=adaptation.teacher_updates,
            agreement=adaptation.agreement_with_source, rollbacks=adaptation.rollbacks)

    # -- personalization -------------------------------------------------------------------
    # Slots never let an exception out: PyQt6 aborts the application on one.
    def _have_pipeline(self) -> bool:
        if self.pipeline is None:
            self.personalization.message.setText("no stream: connect a source first")
        return self.pipeline is not None

    def _start_adaptation(self) -> None:
        if not self._have_pipeline():
            return
        try:
            self.pipeline.start_adaptation()
        except Exception as err:
            self._complain("Cannot start adaptation", err)
            return
        self.personalization.set_running(True)

    def _stop_adaptation(self) -> None:
        if self._have_pipeline():
            try:
                self.pipeline.stop_adaptation()
            except Exception as err:
                self._complain("Cannot stop adaptation", err)
        self.personalization.set_running(False)

    def _reset_adaptation(self) -> None:
        if not self._have_pipeline():
            return
        try:
            self.pipeline.reset_adaptation()
        except Exception as err:
            self._complain("Cannot reset", err)
            return
        self.personalization.message.setText("back to the source model")

    def _save_personalized(self, user: str) -> None:
        if not user:
            self.personalization.message.setText("enter a user name first")
            return
        if not self._have_pipeline():
            return
        suggested = self._users_file(user) if self._model_path is not None else None
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Save personalized model", str(suggested or f"{user}.emgm"),
            "Model files (*.emgm)")
        if path:
            self.save_personalized(path, user)

    def save_personalized(self, path: str | Path, user: str) -> concurrent.futures.Future | None:
        """Start writing the adapted model as ``user``'s model file; returns at once.

        The adapter process writes it (up to seconds): a worker thread waits for that, so
        the window stays responsive, and the panel says "saving…", then where it saved or
        why it failed. Returns the worker's future (its result is the path), or None when
        a save is already running or there is no stream.
        """
        message = self.personalization.message
        if not self._have_pipeline():
            return None
        if self._save_future is not None:
            message.setText("a save is already running")
            return None
        self._save = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="save")
        future = self._save.submit(self.pipeline.save_personalized, path, user)
        self._save_future = future
        self.personalization.save_button.setEnabled(False)
        message.setText(f"saving {user}'s model…")
        future.add_done_callback(lambda f: self._events.put(_WorkDone(self._save_done, f)))
        return future

    def _save_done(self, future: concurrent.futures.Future) -> None:
        if future is not self._save_future:
            return  # already handled by _finish_save
        self._save.shutdown(wait=True)
        self._save, self._save_future = None, None
        self.personalization.save_button.setEnabled(True)
        try:
            saved = future.result()
        except Exception as err:
            self.personalization.message.setText(f"save failed: {err}")
            self._complain("Cannot save the personalized model", err)
            return
        self.personalization.message.setText(f"saved to {saved}")

    def _finish_save(self) -> None:
        """Wait for a running save (before the pipeline and its adapter stop)."""
        future = self._save_future
        if future is None:
            return
        logger.info("waiting for the personalized model to be saved")
        concurrent.futures.wait([future])
        self._save_done(future)

    def _calibrate(self, minutes: float) -> None:
        """Run offline calibration (EMG-UP, ``emgstream calibrate``) on the last ``minutes``
        of the current or last recording, in a separate process; swap the result in."""
        message = self.personalization.message
        user = self.personalization.user_name()
        recording = self.recording_path or self.last_recording
        if self._calibration is not None:
            message.setText("a calibration is already running")
            return
        if not user:
            message.setText("enter a user name first")
            return
        if self._model_path is None:
            message.setText("calibration needs the model's file (start with --model)")
            return
        if recording is None:
            message.setText("record some minutes first (● Record), then calibrate")
            return
        output = self._users_file(user)
        if output is None:
            return
        process = QtCore.QProcess(self)
        process.setProcessChannelMode(QtCore.QProcess.ProcessChannelMode.SeparateChannels)
        process.readyReadStandardError.connect(self._calibration_output)
        process.finished.connect(lambda code, _status: self._calibration_done(code, output))
        self._calibration = process
        self.personalization.calibrate_button.setEnabled(False)
        message.setText(f"calibrating on the last {minutes:g} min of {recording.name}…")
        process.start(sys.executable, ["-m", "apps.live_demo._calibrate", str(recording),
                                       f"{minutes:g}", str(self._model_path), user,
                                       str(output)])

    def _users_file(self, user: str) -> Path | None:
        """Where ``user``'s personalization of this window's model is kept (what ``run
        --user`` picks up), or None with the reason on the panel."""
        try:
            return personal_model_path(user, self._model_path)
        except (ValueError, OSError) as err:
            self.personalization.message.setText(str(err))
            return None

    def _check_calibration_available(self) -> None:
        """Disable the calibrate button, saying why, when it cannot work here."""
        why = missing_extra("torch", "calibration")
        if why is None and self._model_path is None:
            why = "calibration needs the model's file; this window was given a model in memory"
        elif why is None:
            from emgstream.cli import main as cli
            try:
                cli.get_command(None, "calibrate")
            except ImportError as err:
                why = f"the 'emgstream calibrate' command is not available: {err}"
        button = self.personalization.calibrate_button
        button.setEnabled(why is None)
        button.setToolTip(why or "Run the default personalization (EMG-UP+) offline on the "
                                 "last minutes of the current or last recording, in a "
                                 "separate process, and use the personalized model it writes")

    def _calibration_output(self) -> None:
        text = bytes(self._calibration.readAllStandardError()).decode(errors="replace")
        lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
        if lines:
            self._calibration_tail = lines[-1]
            self.personalization.message.setText(lines[-1][-120:])

    def _calibration_done(self, code: int, output: Path) -> None:
        self._calibration.deleteLater()
        self._calibration = None
        self.personalization.calibrate_button.setEnabled(True)
        message = self.personalization.message
        if code != 0 or not output.is_file():
            message.setText(f"calibration failed: {self._calibration_tail}")
            return
        if self.pipeline is None:
            message.setText(f"calibrated model saved to {output}")
            return
        try:
            self.pipeline.swap_model(load_model_file(output))
        except Exception as err:
            message.setText(f"saved {output}, but cannot use it here: {err}")
            return
        message.setText(f"calibrated model saved to {output} and now in use")

    def _stop_calibration(self) -> None:
        process, self._calibration = self._calibration, None
        if process is not None:
            process.finished.disconnect()
            process.kill()
            process.waitForFinished(5000)

    # -- source picker and recording ---------------------------------------------------------
    def scan_devices(self) -> None:
        """List LSL streams and serial ports in the picker; the LSL resolve (about a
        second) runs in a short-lived worker thread so the window stays responsive."""
        if self._scan is not None:
            return
        self.source_panel.refresh_button.setEnabled(False)
        self._scan = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="scan")
        future = self._scan.submit(_list_devices)
        future.add_done_callback(lambda f: self._events.put(_WorkDone(self._scan_done, f)))

    def _scan_done(self, future) -> None:
        self._scan.shutdown(wait=True)
        self._scan = None
        self.source_panel.refresh_button.setEnabled(True)
        try:
            lsl, serial = future.result()
        except Exception as err:
            self._complain("Scan failed", err)
            return
        self.source_panel.set_choices(lsl, serial)
        self.statusBar().showMessage(
            f"found {len(lsl)} LSL stream(s), {len(serial)} serial port(s)")

    def _toggle_recording(self, on: bool) -> None:
        if self.pipeline is None:
            self.source_panel.set_recording(None)
            self._complain("Cannot record", "no stream: connect a source first")
            return
        if on:
            self._record_dir.mkdir(parents=True, exist_ok=True)
            path = self._record_dir / time.strftime("%Y%m%d-%H%M%S.h5")
            try:
                self.pipeline.start_recording(path)
            except Exception as err:
                self.source_panel.set_recording(None)
                self._complain("Cannot record", err)
                return
            self.recording_path = path
        else:
            try:
                self.pipeline.stop_recording()
            except Exception as err:  # the file holds what was flushed before
                self._complain("Recording ended badly", err)
            self.last_recording, self.recording_path = self.recording_path, None
        self.source_panel.set_recording(None if self.recording_path is None
                                        else str(self.recording_path))

    def _complain(self, title: str, err: Exception | str) -> None:
        logger.error("%s: %s", title, err)
        self.statusBar().showMessage(f"{title}: {err}")
