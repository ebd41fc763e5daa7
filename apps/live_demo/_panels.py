"""The control and readout panels: gesture readout, event history, stream health,
personalization, source picker. Plain Qt widgets fed with plain values; the window wires
them to the pipeline."""

from __future__ import annotations

import time

import numpy as np
from PyQt6 import QtCore, QtGui, QtWidgets

from emgstream.sources import DEMO_URI

__all__ = ["GestureReadout", "EventHistory", "HealthPanel", "PersonalizationPanel",
           "SourcePanel", "CpuMeter"]

_NO_GESTURE = "—"
#: What "confidence" means wherever the window shows one (readout and events table alike):
#: the pipeline's smoothed probability of the gesture, its GestureEvent.confidence.
CONFIDENCE_HELP = ("confidence: the smoothed probability of the gesture (averaged over the "
                   "last hops), as emgstream run prints it")


def _bold(size: int) -> QtGui.QFont:
    font = QtGui.QFont()
    font.setPointSize(size)
    font.setBold(True)
    return font


class GestureReadout(QtWidgets.QGroupBox):
    """The current gesture in large type, its confidence, and one bar per class."""

    def __init__(self, class_names, parent=None):
        super().__init__("Gesture", parent)
        layout = QtWidgets.QVBoxLayout(self)
        self.name_label = QtWidgets.QLabel(_NO_GESTURE)
        self.name_label.setFont(_bold(30))
        self.name_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.name_label.setObjectName("gestureName")
        self.confidence_label = QtWidgets.QLabel("confidence –")
        self.confidence_label.setToolTip(CONFIDENCE_HELP + "; now")
        self.confidence_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.confidence_label.setFont(_bold(12))
        layout.addWidget(self.name_label)
        layout.addWidget(self.confidence_label)
        self._grid = QtWidgets.QGridLayout()
        self._grid.setVerticalSpacing(2)
        layout.addLayout(self._grid)
        self._bars: list[QtWidgets.QProgressBar] = []
        self._names: list[QtWidgets.QLabel] = []
        self._bold_font, self._plain_font = _bold(9), QtGui.QFont()
        self.set_classes(class_names)

    def set_classes(self, class_names) -> None:
        for widget in self._bars + self._names:
            self._grid.removeWidget(widget)
            widget.deleteLater()
        self.class_names = list(class_names)
        self._bars, self._names = [], []
        for row, name in enumerate(self.class_names):
            label = QtWidgets.QLabel(name)
            bar = QtWidgets.QProgressBar()
            bar.setRange(0, 100)
            bar.setTextVisible(False)
            bar.setFixedHeight(14)
            self._grid.addWidget(label, row, 0)
            self._grid.addWidget(bar, row, 1)
            self._names.append(label)
            self._bars.append(bar)

    @property
    def gesture_text(self) -> str:
        """What the readout shows (a class name, or a dash before the first event)."""
        return self.name_label.text()

    def set_gesture(self, gesture: str | None, confidence: float | None) -> None:
        text = gesture if gesture else _NO_GESTURE
        if text != self.name_label.text():
            self.name_label.setText(text)
            for label in self._names:
                label.setFont(self._bold_font if label.text() == gesture else self._plain_font)
        self.confidence_label.setText(
            "confidence –" if confidence is None else f"confidence {confidence:.0%}")

    def set_probabilities(self, probabilities) -> None:
        # QProgressBar.setValue repaints at once, in the caller, holding the GIL; with
        # updates off the bars are painted later by Qt's event loop, which runs without it.
        self.setUpdatesEnabled(False)
        for bar, p in zip(self._bars, probabilities):
            bar.setValue(int(round(100 * float(p))))
        self.setUpdatesEnabled(True)


class EventHistory(QtWidgets.QGroupBox):
    """The latest gesture events, newest first, with confidence and end-to-end latency."""

    def __init__(self, max_rows: int = 8, parent=None):
        super().__init__("Recent events", parent)
        self.max_rows = int(max_rows)
        self.table = QtWidgets.QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["time", "gesture", "confidence", "latency"])
        self.table.horizontalHeaderItem(2).setToolTip(CONFIDENCE_HELP + "; when detected")
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setDefaultSectionSize(18)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.table)
        self.count = 0

    def add(self, gesture: str, confidence: float, latency_s: float) -> None:
        self.count += 1
        self.table.insertRow(0)
        cells = (time.strftime("%H:%M:%S"), gesture, f"{confidence:.0%}",
                 f"{1000 * latency_s:.1f} ms")
        for col, text in enumerate(cells):
            self.table.setItem(0, col, QtWidgets.QTableWidgetItem(text))
        while self.table.rowCount() > self.max_rows:
            self.table.removeRow(self.table.rowCount() - 1)

    def gestures(self) -> list[str]:
        """Gesture names in the table, newest first."""
        return [self.table.item(r, 1).text() for r in range(self.table.rowCount())]


class CpuMeter:
    """CPU use in percent of one core, from deltas of a CPU-seconds clock: this process's
    (``time.process_time``, the default) or another's (the pipeline process reports its own).
    """

    def __init__(self, clock=time.process_time) -> None:
        self._clock = clock
        self._wall = time.perf_counter()
        self._cpu = clock()
        self.percent = 0.0

    def update(self, min_interval: float = 0.5) -> float:
        wall, cpu = time.perf_counter(), self._clock()
        if wall - self._wall >= min_interval:
            self.percent = 100.0 * (cpu - self._cpu) / (wall - self._wall)
            self._wall, self._cpu = wall, cpu
        return self.percent


class HealthPanel(QtWidgets.QGroupBox):
    """Effective rate, dropped samples, backlog, latency percentiles, CPU, frame rate."""

    _FIELDS = (("rate", "effective rate"), ("dropped", "dropped samples"),
               ("backlog", "inlet backlog"), ("latency", "latency p50 / p99"),
               ("cpu", "CPU window / pipeline"), ("fps", "display"))

    def __init__(self, parent=None):
        super().__init__("Stream health", parent)
        form = QtWidgets.QFormLayout(self)
        form.setVerticalSpacing(2)
        self.values: dict[str, QtWidgets.QLabel] = {}
        for key, title in self._FIELDS:
            value = QtWidgets.QLabel("–")
            value.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
            form.addRow(title, value)
            self.values[key] = value

    def set_values(self, *, rate: float, nominal_rate: float, dropped: int, backlog: int,
                   latency_p50: float, latency_p99: float, cpu_percent: float,
                   pipeline_cpu_percent: float, fps: float) -> None:
        """``cpu_percent``: the window's process; ``pipeline_cpu_percent``: the pipeline's
        (acquisition, inference; the adapter's process not included)."""
        self.values["rate"].setText(f"{rate:,.0f} Hz (nominal {nominal_rate:,.0f})")
        self.values["dropped"].setText(f"{dropped:,}")
        self.values["backlog"].setText(f"{backlog:,} samples")
        self.values["latency"].setText(
            "–" if not np.isfinite(latency_p50) else
            f"{1000 * latency_p50:.1f} / {1000 * latency_p99:.1f} ms")
        self.values["cpu"].setText(f"{cpu_percent:.0f} % / {pipeline_cpu_percent:.0f} % "
                                   "of one core")
        self.values["fps"].setText(f"{fps:.0f} frames/s")


class PersonalizationPanel(QtWidgets.QGroupBox):
    """Online adaptation controls and progress, saving, and offline calibration."""

    start_clicked = QtCore.pyqtSignal()
    stop_clicked = QtCore.pyqtSignal()
    reset_clicked = QtCore.pyqtSignal()
    save_clicked = QtCore.pyqtSignal(str)  # user name
    calibrate_clicked = QtCore.pyqtSignal(float)  # minutes

    def __init__(self, parent=None):
        super().__init__("Personalization", parent)
        layout = QtWidgets.QVBoxLayout(self)
        row = QtWidgets.QHBoxLayout()
        self.start_button = QtWidgets.QPushButton("Start adapting")
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.reset_button = QtWidgets.QPushButton("Reset to source")
        self.start_button.setToolTip("Adapt the model to this user online, without labels "
                                     "(EMG-UP+: class-centroid pseudo-labels from an EMA "
                                     "teacher, the default personalization)")
        self.reset_button.setToolTip("Discard the adaptation and use the shipped model again")
        for button in (self.start_button, self.stop_button, self.reset_button):
            row.addWidget(button)
        layout.addLayout(row)
        self.stop_button.setEnabled(False)

        form = QtWidgets.QFormLayout()
        form.setVerticalSpacing(2)
        self.progress: dict[str, QtWidgets.QLabel] = {}
        for key, title in (("state", "state"), ("windows", "windows seen"),
                           ("accepted", "pseudo-labels accepted"),
                           ("updates", "teacher updates"),
                           ("agreement", "agreement source / adapted"),
                           ("rollbacks", "collapse-guard rollbacks")):
            value = QtWidgets.QLabel("–")
            form.addRow(title, value)
            self.progress[key] = value
        layout.addLayout(form)

        save_row = QtWidgets.QHBoxLayout()
        self.user_edit = QtWidgets.QLineEdit()
        self.user_edit.setPlaceholderText("user name")
        self.save_button = QtWidgets.QPushButton("Save personalized model")
        save_row.addWidget(self.user_edit)
        save_row.addWidget(self.save_button)
        layout.addLayout(save_row)

        calib_row = QtWidgets.QHBoxLayout()
        self.minutes_spin = QtWidgets.QDoubleSpinBox()
        self.minutes_spin.setRange(0.25, 60.0)
        self.minutes_spin.setSingleStep(0.5)
        self.minutes_spin.setValue(2.0)
        self.minutes_spin.setSuffix(" min")
        self.calibrate_button = QtWidgets.QPushButton("Calibrate over last")
        calib_row.addWidget(self.calibrate_button)
        calib_row.addWidget(self.minutes_spin)
        layout.addLayout(calib_row)
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)

        self.start_button.clicked.connect(self.start_clicked)
        self.stop_button.clicked.connect(self.stop_clicked)
        self.reset_button.clicked.connect(self.reset_clicked)
        self.save_button.clicked.connect(lambda: self.save_clicked.emit(self.user_name()))
        self.calibrate_button.clicked.connect(
            lambda: self.calibrate_clicked.emit(self.minutes_spin.value()))

    def user_name(self) -> str:
        return self.user_edit.text().strip()

    def set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def set_progress(self, *, state: str, windows: int, accepted: int,
                     acceptance: float | None, updates: int, agreement: float | None,
                     rollbacks: int) -> None:
        self.progress["state"].setText(state)
        self.progress["windows"].setText(f"{windows:,}")
        self.progress["accepted"].setText(
            f"{accepted:,}" + ("" if acceptance is None else f" ({acceptance:.0%} of buffer)"))
        self.progress["updates"].setText(f"{updates:,}")
        self.progress["agreement"].setText(
            "–" if agreement is None or not np.isfinite(agreement) else f"{agreement:.0%}")
        self.progress["rollbacks"].setText(f"{rollbacks:,}")


class SourcePanel(QtWidgets.QGroupBox):
    """Pick a source (simulated, LSL, serial, replay file), connect, and record."""

    connect_clicked = QtCore.pyqtSignal(str)  # source URI
    refresh_clicked = QtCore.pyqtSignal()
    record_toggled = QtCore.pyqtSignal(bool)

    SIM_URI = DEMO_URI

    def __init__(self, current_uri: str, parent=None):
        super().__init__("Source", parent)
        layout = QtWidgets.QVBoxLayout(self)
        self.combo = QtWidgets.QComboBox()
        self.combo.setSizeAdjustPolicy(
            QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(18)
        row = QtWidgets.QHBoxLayout()
        self.refresh_button = QtWidgets.QPushButton("Scan")
        self.refresh_button.setToolTip("Look for LSL streams and serial ports")
        self.file_button = QtWidgets.QPushButton("Replay file…")
        self.connect_button = QtWidgets.QPushButton("Connect")
        row.addWidget(self.refresh_button)
        row.addWidget(self.file_button)
        row.addWidget(self.connect_button)
        self.current_label = QtWidgets.QLabel()
        self.current_label.setWordWrap(True)
        record_row = QtWidgets.QHBoxLayout()
        self.record_button = QtWidgets.QPushButton("● Record")
        self.record_button.setCheckable(True)
        self.record_label = QtWidgets.QLabel("not recording")
        self.record_label.setWordWrap(True)
        record_row.addWidget(self.record_button)
        record_row.addWidget(self.record_label, 1)
        layout.addWidget(self.combo)
        layout.addLayout(row)
        layout.addWidget(self.current_label)
        layout.addLayout(record_row)
        self.set_choices([], [])
        self.set_current(current_uri)

        self.refresh_button.clicked.connect(self.refresh_clicked)
        self.file_button.clicked.connect(self._pick_file)
        self.connect_button.clicked.connect(
            lambda: self.connect_clicked.emit(self.combo.currentData()))
        self.record_button.toggled.connect(self.record_toggled)

    def set_current(self, uri: str) -> None:
        self.current_label.setText(f"streaming from <b>{uri}</b>")

    def set_choices(self, lsl_streams, serial_ports) -> None:
        """``lsl_streams``: (name, source_id); ``serial_ports``: (device, description)."""
        self.combo.clear()
        self.combo.addItem("Simulated wristband", self.SIM_URI)
        for name, source_id in lsl_streams:
            uri = f"lsl://source_id={source_id}" if source_id else f"lsl://name={name}"
            self.combo.addItem(f"LSL: {name}", uri)
        for device, description in serial_ports:
            self.combo.addItem(f"Serial: {device} ({description})", f"serial://{device}")

    def _pick_file(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Replay a recording", "", "Recordings (*.h5 *.hdf5 *.xdf)")
        if path:
            self.combo.addItem(f"Replay: {path}", f"replay://{path}")
            self.combo.setCurrentIndex(self.combo.count() - 1)

    def set_recording(self, path: str | None) -> None:
        blocker = QtCore.QSignalBlocker(self.record_button)
        self.record_button.setChecked(path is not None)
        del blocker
        self.record_button.setText("■ Stop" if path else "● Record")
        self.record_label.setText(f"recording to {path}" if path else "not recording")
