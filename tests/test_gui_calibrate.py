"""The window's "calibrate over the last N minutes": the cropping step, the button's state,
and (slow) a real calibration subprocess whose model the pipeline then uses."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from PyQt6 import QtWidgets  # noqa: E402

from emgstream.io import RecordingWriter, read_recording  # noqa: E402
from emgstream.modelfile import save_model_file  # noqa: E402
from emgstream.pipeline import PipelineConfig, personal_model_path  # noqa: E402
from emgstream.sources import StreamInfo  # noqa: E402

pytestmark = pytest.mark.gui


def _calibrate_available() -> bool:
    from emgstream.cli import main

    try:
        main.get_command(None, "calibrate")
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def qapp():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication(["test"])


def test_crop_keeps_exactly_the_last_minutes(tmp_path):
    from apps.live_demo._calibrate import crop_recording

    rate, n = 200.0, 200 * 90  # 90 s at 200 Hz
    info = StreamInfo("band", 3, rate, device_id="dev-1", kind="lsl")
    samples = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    times = 100.0 + np.arange(n) / rate
    src, dst = tmp_path / "session.h5", tmp_path / "crop.h5"
    with RecordingWriter(src, info, user="ann") as writer:
        for start in range(0, n, 777):  # chunked, as live recording writes
            writer.append(samples[start:start + 777], times[start:start + 777])
    assert crop_recording(src, dst, minutes=0.5) == 30 * 200
    crop = read_recording(dst)
    np.testing.assert_array_equal(crop.emg, samples[-6000:])
    np.testing.assert_array_equal(crop.time, times[-6000:])
    assert crop.sample_rate == rate and crop.meta["user"] == "ann"
    assert crop.meta["device"]["device_id"] == "dev-1"
    # asking for more than there is gives everything
    assert crop_recording(src, dst, minutes=5) == n
    with pytest.raises(ValueError, match="minutes must be positive"):
        crop_recording(src, dst, minutes=0)


def test_calibrate_button_says_why_when_it_cannot_run(qapp, tmp_path):
    from apps.live_demo import LiveDemoWindow
    from emgstream.sources import open_source
    from emgstream.train import make_test_model

    model = make_test_model(classes=open_source("sim://").class_names)
    window = LiveDemoWindow(model, "sim://", record_dir=tmp_path)  # no model file
    try:
        button = window.personalization.calibrate_button
        assert not button.isEnabled()
        assert "model's file" in button.toolTip()
    finally:
        window.close()
    path = save_model_file(tmp_path / "m.emgm", model)
    window = LiveDemoWindow(model, "sim://", record_dir=tmp_path, model_path=path)
    try:
        button = window.personalization.calibrate_button
        assert button.isEnabled() == _calibrate_available()
        if not button.isEnabled():
            assert "calibrate" in button.toolTip()
        else:  # without a recording it asks for one instead of failing
            window.personalization.user_edit.setText("ann")
            button.click()
            assert "record" in window.personalization.message.text()
    finally:
        window.close()


@pytest.mark.slow
def test_calibration_runs_in_a_subprocess_and_its_model_is_used(qapp, tmp_path):
    if not _calibrate_available():
        pytest.skip("'emgstream calibrate' is not available yet")
    from apps.live_demo import LiveDemoWindow
    from emgstream.sources import open_source
    from emgstream.train import make_test_model

    model = make_test_model(classes=open_source("sim://").class_names)
    path = save_model_file(tmp_path / "m.emgm", model)
    window = LiveDemoWindow(model, "sim://", record_dir=tmp_path, model_path=path,
                            config=PipelineConfig(threshold=0.0))
    try:
        window.source_panel.record_button.click()
        deadline = time.monotonic() + 16
        while time.monotonic() < deadline:
            qapp.processEvents()
            time.sleep(0.01)
        window.personalization.user_edit.setText("ann")
        window.personalization.minutes_spin.setValue(0.25)
        window.personalization.calibrate_button.click()
        assert window._calibration is not None
        version = window.pipeline.stats.model_version
        deadline = time.monotonic() + 400
        while window._calibration is not None and time.monotonic() < deadline:
            qapp.processEvents()
            time.sleep(0.02)
        assert window._calibration is None, "calibration did not finish"
        text = window.personalization.message.text()
        assert "now in use" in text, text
        # written where `run --user ann` and `demo --user ann` pick it up
        assert personal_model_path("ann", path).is_file()
        deadline = time.monotonic() + 5
        while window.pipeline.stats.model_version == version and time.monotonic() < deadline:
            qapp.processEvents()
            time.sleep(0.02)
        assert window.pipeline.stats.model_version > version
    finally:
        window.close()
