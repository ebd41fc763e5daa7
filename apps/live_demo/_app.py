"""Start the window: QApplication, model, optional auto-close and screenshot."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from PyQt6 import QtCore, QtWidgets

from emgstream.modelfile import load_model_file
from emgstream.pipeline import PipelineConfig, personal_model_path

from .window import LiveDemoWindow

__all__ = ["run_demo_window"]

logger = logging.getLogger(__name__)
_qt_logger = logging.getLogger("qt")
# Qt's warnings are mostly its platform plugins talking ("This plugin does not support
# propagateSizeHints()" offscreen): information for -v, not for the terminal by default
_QT_LEVELS = {QtCore.QtMsgType.QtDebugMsg: logging.DEBUG,
              QtCore.QtMsgType.QtInfoMsg: logging.INFO,
              QtCore.QtMsgType.QtWarningMsg: logging.INFO,
              QtCore.QtMsgType.QtCriticalMsg: logging.ERROR,
              QtCore.QtMsgType.QtFatalMsg: logging.CRITICAL}


def _qt_message(kind, _context, message: str) -> None:
    _qt_logger.log(_QT_LEVELS.get(kind, logging.WARNING), "%s", message)


def run_demo_window(source_uri: str, model_path: str | Path, *, duration: float | None = None,
                    record_dir: str | Path = "recordings",
                    config: PipelineConfig | None = None, user: str = "",
                    started_at: float | None = None,
                    screenshot: str | Path | None = None) -> int:
    """Open the window on ``source_uri`` with the model file ``model_path`` and run Qt's
    event loop until the window is closed (or ``duration`` seconds have passed).

    Returns the application's exit code. Closing the window stops the pipeline's threads.
    ``started_at`` (``time.perf_counter()`` at program start) dates the time to the first
    gesture on screen. ``screenshot``: a PNG of the window saved just before it closes
    after ``duration``. ``user``: the name the personalization panel starts with; when
    that user has a personalized model of ``model_path``, the window starts with it.
    """
    if screenshot is not None and duration is None:
        raise ValueError("a screenshot is taken at the end of 'duration'; give a duration")
    t0 = time.perf_counter() if started_at is None else started_at
    personal = personal_model_path(user, model_path) if user else None
    if personal is not None and personal.is_file():
        logger.info("using %s's personalized model %s", user, personal)
        model = load_model_file(personal)
    else:
        model = load_model_file(model_path)
    QtCore.qInstallMessageHandler(_qt_message)
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    window = LiveDemoWindow(model, source_uri, config=config, record_dir=record_dir,
                            model_path=model_path, user=user, started_at=t0)
    window.show()

    def finish() -> None:
        if screenshot is not None and not window.grab().save(str(screenshot)):
            logger.error("could not save the screenshot to %s", screenshot)
        window.close()

    if duration is not None:
        QtCore.QTimer.singleShot(int(duration * 1000), finish)
    code = app.exec()
    if window.first_event_s is not None:
        logger.info("first gesture on screen %.2f s after start", window.first_event_s)
    return code
