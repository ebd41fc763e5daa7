"""The signal views on known signals: display decimation keeps peaks, the spectrum shows a
mains line where it is, the RMS ring and traces follow their input."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PyQt6")
pytest.importorskip("pyqtgraph")

from PyQt6 import QtWidgets  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def qapp():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication(["test"])


def test_minmax_decimation_keeps_every_peak_and_the_newest_sample():
    from apps.live_demo._views import decimate_minmax

    rng = np.random.default_rng(0)
    x = rng.normal(size=(10_007, 3)).astype(np.float32)
    x[5000, 1] = 40.0  # a single-sample spike that a plain stride would miss
    x[123, 2] = -35.0
    index, y = decimate_minmax(x, 1000)
    assert y.shape[0] <= 1000 and y.shape[1] == 3
    assert y[:, 1].max() == 40.0 and y[:, 2].min() == -35.0
    assert index[-1] == x.shape[0] - 1
    assert np.all(np.diff(index) >= 0)
    # each output value is the sample at its index
    assert np.isin(y[:, 0], x[:, 0]).all()
    # short inputs pass through untouched
    index, y = decimate_minmax(x[:50], 1000)
    np.testing.assert_array_equal(y, x[:50])


@pytest.mark.parametrize("mains", [50.0, 60.0])
def test_spectrum_shows_mains_at_its_frequency(qapp, mains):
    from apps.live_demo._views import SpectrumView

    rate = 2000.0
    t = np.arange(int(2 * rate)) / rate
    rng = np.random.default_rng(1)
    x = rng.normal(0, 5, (t.size, 4)) + 30 * np.sin(2 * np.pi * mains * t)[:, None]
    view = SpectrumView(rate, mains)
    view.set_data(x.astype(np.float32))
    freqs, power = view.raw_curve.getData()
    assert freqs.max() == rate / 2  # up to Nyquist, and the axis with it
    assert view.getViewBox().viewRange()[0][1] == pytest.approx(rate / 2)
    peak = freqs[np.argmax(power)]
    assert abs(peak - mains) <= rate / 512  # within one Welch bin
    lines = [line.value() for line in view._mains_lines]
    assert lines[0] == mains and lines[1] == 2 * mains


def test_spectrum_draws_raw_and_filtered_curves_with_the_mains_only_in_raw(qapp):
    from apps.live_demo._views import SpectrumView

    rate = 2000.0
    t = np.arange(int(rate)) / rate
    rng = np.random.default_rng(5)
    filtered = rng.normal(0, 5, (t.size, 3))  # what an ideal notch leaves
    raw = filtered + 50 * np.sin(2 * np.pi * 50 * t)[:, None]
    view = SpectrumView(rate, 50.0)
    view.set_data(raw.astype(np.float32), filtered.astype(np.float32))
    # in log mode the curves hold log10 of the power
    freqs, raw_log = view.raw_curve.getData()
    f2, filtered_log = view.filtered_curve.getData()
    np.testing.assert_array_equal(freqs, f2)
    at_mains = np.argmin(np.abs(freqs - 50))
    assert np.argmax(raw_log) == at_mains
    assert np.argmax(filtered_log) != at_mains
    assert filtered_log[at_mains] < raw_log[at_mains] - 2  # 100x less power
    # the power axis covers both curves
    low, high = view.getViewBox().viewRange()[1]
    assert low <= np.percentile(filtered_log, 1) and high >= raw_log.max()


def test_rms_ring_lights_the_active_electrodes(qapp):
    from apps.live_demo._views import BandRmsView

    view = BandRmsView([f"EMG{i + 1}" for i in range(8)])
    rms = np.full(8, 2.0)
    rms[3] = 40.0
    view.set_rms(rms)
    x, y = view._spokes.getData()
    lengths = np.hypot(x[1::2], y[1::2]) - np.hypot(x[0::2], y[0::2])
    assert np.argmax(lengths) == 3 and lengths[3] > 5 * lengths[0]
    brushes = [b.color().name() for b in view._dots.data["brush"]]
    assert brushes[3] != brushes[0]


def test_traces_stack_channels_in_lanes_newest_at_zero(qapp):
    from apps.live_demo._views import TracesView

    names = ["A", "B", "C"]
    view = TracesView(names, seconds=2.0)
    rate = 1000.0
    ts = 50.0 + np.arange(5000) / rate
    x = np.zeros((5000, 3), np.float32)
    x[:, 0] = np.random.default_rng(2).normal(0, 10, 5000)
    view.set_data(x, ts)
    t, y = view._curve.getData()
    assert t.max() == 0.0 and t.min() >= -2.0
    lanes = y.reshape(3, -1)
    assert np.isnan(lanes[:, -1]).all()  # the path breaks between lanes
    lanes = lanes[:, :-1]
    # channel A on top (lane 2), the flat channels sit exactly on their lanes
    assert abs(lanes[0].mean() - 2) < 0.2
    np.testing.assert_allclose(lanes[1], 1.0)
    np.testing.assert_allclose(lanes[2], 0.0)
    assert np.abs(lanes[0] - 2).max() <= 0.55 + 1e-6  # clipped to its lane
    assert np.abs(lanes[0] - 2).max() > 0.2  # and not flattened by the flat channels
    ticks = view.getAxis("left")._tickLevels[0]
    assert [label for _, label in ticks] == names


@pytest.mark.parametrize("amplitude, units, symbol", [(40.0, "microvolts", "µV"),
                                                      (0.3, "millivolts", "mV")])
def test_traces_carry_an_amplitude_scale_in_the_streams_units(qapp, amplitude, units, symbol):
    from apps.live_demo._views import TracesView, nice_step

    view = TracesView(["A", "B"], seconds=1.0, units=units)
    rate = 1000.0
    t = np.arange(3000) / rate
    x = np.stack([amplitude * np.sin(2 * np.pi * 7 * t), np.zeros_like(t)], 1)
    for k in range(0, 3000, 100):  # the scale settles as chunks arrive, like the window's
        view.set_data(x[:k + 100].astype(np.float32), t[:k + 100])
    length, value = view.scale_bar
    assert view.scale_label.toPlainText() == f"{value:g} {symbol}"
    assert value == nice_step(value) and 0 < length <= 0.5 + 1e-9
    # the bar is drawn to the traces' scale: A's peak (lane 1) stands as far above its
    # lane as its amplitude is to the bar's value
    _, y = view._curve.getData()
    peak = np.nanmax(y.reshape(2, -1)[0]) - 1.0
    assert peak < 0.55  # not clipped, so the comparison holds
    assert peak / length == pytest.approx(amplitude / value, rel=1e-3)


def test_nice_steps():
    from apps.live_demo._views import nice_step

    assert [nice_step(x) for x in (0.7, 1.0, 3.3, 7.9, 12.0, 260.0)] == \
        [0.5, 1.0, 2.0, 5.0, 10.0, 200.0]


def test_rms_ring_has_a_colour_bar_in_the_streams_units(qapp):
    from apps.live_demo._views import BandRmsView

    view = BandRmsView([f"EMG{i + 1}" for i in range(4)], units="microvolts")
    view.set_rms(np.array([1.0, 2.0, 30.0, 4.0]))
    assert view.colorbar.levels() == pytest.approx((0.0, 30.0))  # the brightest electrode
    assert "RMS (µV)" in view.colorbar.axis.labelString()


def test_readout_and_events_table_show_one_confidence(qapp):
    from apps.live_demo._panels import CONFIDENCE_HELP, EventHistory, GestureReadout

    readout, history = GestureReadout(["rest", "fist"]), EventHistory()
    readout.set_gesture("fist", 0.873)
    history.add("fist", 0.873, 0.012)
    assert readout.confidence_label.text() == "confidence 87%"
    assert history.table.item(0, 2).text() == "87%"
    assert history.table.horizontalHeaderItem(2).text() == "confidence"
    assert CONFIDENCE_HELP in readout.confidence_label.toolTip()
    assert CONFIDENCE_HELP in history.table.horizontalHeaderItem(2).toolTip()
