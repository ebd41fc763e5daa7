"""The signal views: stacked traces, the RMS ring around the band, the spectrum.

Each view takes plain arrays (``set_data``) and knows nothing about the pipeline, so it
can be driven by any snapshot. Decimation here is for display only; the models see the
full-rate stream.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtGui
from scipy.signal import welch

__all__ = ["TracesView", "BandRmsView", "SpectrumView", "decimate_minmax", "nice_step",
           "unit_symbol"]

_SYMBOLS = {"microvolts": "µV", "millivolts": "mV", "volts": "V"}


def unit_symbol(units: str) -> str:
    """The short form of a stream's units for an axis ("microvolts" -> "µV")."""
    return _SYMBOLS.get(units.lower(), units)


def nice_step(x: float) -> float:
    """The largest of 1, 2 or 5 times a power of ten that is at most ``x`` (``x`` > 0): a
    scale bar's length a reader takes in at a glance."""
    power = 10.0 ** np.floor(np.log10(x))
    return float(max(m * power for m in (1, 2, 5) if m * power <= x * (1 + 1e-9)))


def decimate_minmax(x: np.ndarray, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Reduce ``x`` (time, channels) to about ``n_out`` rows keeping each block's peaks.

    Returns ``(index, y)`` where ``index`` (m,) are the source rows (for the time axis) and
    ``y`` (m, channels) alternate block minima and maxima, so spikes stay visible after
    decimation (a plain stride would hide them).
    """
    n = x.shape[0]
    if n <= n_out:
        return np.arange(n), x
    block = int(np.ceil(2 * n / n_out))
    n_blocks = n // block
    start = n - n_blocks * block  # drop the oldest remainder so the newest sample is kept
    blocks = x[start:].reshape(n_blocks, block, x.shape[1])
    y = np.empty((2 * n_blocks, x.shape[1]), dtype=x.dtype)
    y[0::2] = blocks.min(axis=1)
    y[1::2] = blocks.max(axis=1)
    index = start + np.repeat(np.arange(n_blocks) * block, 2) + np.tile([0, block - 1], n_blocks)
    return index, y


class TracesView(pg.PlotWidget):
    """All channels, filtered, offset-stacked, newest sample at the right edge (t = 0).

    The channels are drawn as one curve with breaks between lanes (one path to paint, not
    one per channel) and in lane units (each trace divided by a common scale), so the
    view's ranges and ticks never change while streaming. ``max_points`` per channel are
    min/max pairs (300 pairs over 4 s: one per 13 ms, about 2 pixels); PyQt keeps the
    GIL while Qt builds and draws the path (about 0.5 µs a segment), so a longer path
    would delay the inference thread.
    """

    def __init__(self, channel_names, seconds: float = 4.0, max_points: int = 600,
                 units: str = "microvolts", parent=None):
        super().__init__(parent=parent)
        self.seconds = float(seconds)
        self.max_points = int(max_points)
        self._scale = None  # µV per lane; follows the signal slowly
        self.setBackground("w")
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.enableAutoRange(False)
        self.setLabel("bottom", "time", units="s")
        self.setTitle("EMG (filtered)", color="k", size="11pt")
        # pyqtgraph keeps only a pointer to the tick font: hold the object
        self._tick_font = QtGui.QFont()
        self._tick_font.setPointSize(8)
        self.getAxis("left").setStyle(tickFont=self._tick_font)
        self._curve = pg.PlotCurveItem(pen=pg.mkPen("#1f4e79", width=1))
        self.addItem(self._curve)
        # the amplitude scale: a bar at the left edge of the top lane and its length in units
        self._scale_bar = pg.PlotCurveItem(pen=pg.mkPen("k", width=3))
        self.scale_label = pg.TextItem("", color="k", anchor=(0, 0.5))
        self.addItem(self._scale_bar)
        self.addItem(self.scale_label)
        self._shown_step = None
        self.set_channels(channel_names, units)

    def set_channels(self, channel_names, units: str = "microvolts") -> None:
        self._units = unit_symbol(units)
        self._names = tuple(channel_names)
        n_ch = len(self._names)
        self._lanes = np.arange(n_ch - 1, -1, -1, dtype=np.float64)  # channel 1 on top
        self.getAxis("left").setTicks([[(self._lanes[ch], name)
                                        for ch, name in enumerate(self._names)]])
        self.setXRange(-self.seconds, 0, padding=0.0)
        self.setYRange(-0.8, n_ch - 0.2, padding=0.0)
        self._scale = None
        self._shown_step = None
        self._curve.setData([], [])
        self._scale_bar.setData([], [])
        self.scale_label.setText("")

    @property
    def scale_bar(self) -> tuple[float, float]:
        """``(length in lanes, the amplitude it stands for in the stream's units)``."""
        x, y = self._scale_bar.getData()
        return (0.0, 0.0) if y is None or len(y) < 2 else (float(y[1] - y[0]), self._shown_step)

    def _show_scale(self) -> None:
        # a bar of a round amplitude, at most half a lane (what a trace may swing either
        # way), as long as a trace of that amplitude; its label changes with the number only
        step = nice_step(0.5 * self._scale)
        top, x = self._lanes[0], -self.seconds * 0.985
        length = step / self._scale
        self._scale_bar.setData([x, x], [top - length / 2, top + length / 2])
        if step != self._shown_step:
            self._shown_step = step
            self.scale_label.setText(f"{step:g} {self._units}")
            self.scale_label.setPos(x + self.seconds * 0.008, top)

    def set_data(self, samples: np.ndarray, timestamps: np.ndarray) -> None:
        """Draw ``samples`` (time, channels) µV against ``timestamps`` (time,) s."""
        if samples.shape[0] < 2:
            return
        t_end = timestamps[-1]
        first = int(np.searchsorted(timestamps, t_end - self.seconds))
        index, y = decimate_minmax(samples[first:], self.max_points)
        t = timestamps[first:][index] - t_end
        # Scale from a robust amplitude (upper quartile over channels of each channel's
        # mean |x| in the decimated envelope: neither one saturated electrode nor a few
        # dead ones set it), smoothed so that one burst does not make the plot jump;
        # traces are clipped to their lane so a strong contraction never hides its
        # neighbours.
        spread = 4.0 * float(np.percentile(np.abs(y).mean(axis=0), 75)) + 1e-6
        self._scale = spread if self._scale is None else 0.9 * self._scale + 0.1 * spread
        n_ch = y.shape[1]
        # (channels, m + 1): each lane followed by a NaN, which breaks the path between
        # lanes ("finite" is pyqtgraph's fast path; a boolean connect array is ~4x slower)
        xs = np.empty((n_ch, len(t) + 1))
        xs[:, :-1] = t
        xs[:, -1] = t[-1]
        ys = np.full((n_ch, len(t) + 1), np.nan)
        ys[:, :-1] = np.clip(y.T / self._scale, -0.55, 0.55) + self._lanes[:, None]
        self._curve.setData(xs.ravel(), ys.ravel(), connect="finite")
        self._show_scale()


class BandRmsView(pg.PlotWidget):
    """The electrodes around the band: marker colour and spoke length follow each RMS.

    Electrode 1 is at the top and the numbering goes clockwise, in channel order. A colour
    bar beside the ring gives the RMS each colour stands for, in the stream's units.
    """

    def __init__(self, channel_names, units: str = "microvolts", parent=None):
        super().__init__(parent=parent)
        self.setBackground("w")
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.enableAutoRange(False)
        self.setAspectLocked(True)
        self.hideAxis("left")
        self.hideAxis("bottom")
        self.setTitle("RMS around the band", color="k", size="11pt")
        # 32 shades, built once: making brushes per frame is costly in pyqtgraph
        colormap = pg.colormap.get("viridis")
        self._brushes = [pg.mkBrush(c) for c in
                         colormap.map(np.linspace(0, 1, 32), mode="qcolor")]
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=colormap, width=12,
                                        interactive=False, colorMapMenu=False)
        self.getPlotItem().layout.addItem(self.colorbar, 2, 5)
        self._shown_levels = None
        self._scale = None
        self._items = []
        self.set_channels(channel_names, units)

    def set_channels(self, channel_names, units: str = "microvolts") -> None:
        self.colorbar.axis.setLabel(f"RMS ({unit_symbol(units)})", color="k")
        for item in self._items:
            self.removeItem(item)
        n = len(channel_names)
        angle = np.pi / 2 - 2 * np.pi * np.arange(n) / n  # clockwise from the top
        self._ux, self._uy = np.cos(angle), np.sin(angle)
        ring = pg.PlotCurveItem(np.append(self._ux, self._ux[0]), np.append(self._uy, self._uy[0]),
                                pen=pg.mkPen("#bbbbbb", width=2))
        self._spokes = pg.PlotCurveItem(pen=pg.mkPen("#444444", width=3), connect="pairs")
        self._dots = pg.ScatterPlotItem(self._ux, self._uy, size=18, pen=pg.mkPen("k", width=1),
                                        brush=self._brushes[0])
        self._items = [ring, self._spokes, self._dots]
        for item in self._items:
            self.addItem(item)
        for i in range(n):
            label = pg.TextItem(str(i + 1), color="k", anchor=(0.5, 0.5))
            label.setPos(0.72 * self._ux[i], 0.72 * self._uy[i])
            self.addItem(label)
            self._items.append(label)
        self.setXRange(-2.0, 2.0, padding=0)
        self.setYRange(-2.0, 2.0, padding=0)
        self._scale = None
        self._shown_levels = None

    def set_rms(self, rms: np.ndarray) -> None:
        """``rms`` (channels,) in µV."""
        peak = float(np.max(rms)) + 1e-9
        # The colour scale decays slowly towards the current peak: rest looks quiet,
        # a contraction lights the electrodes over the active muscles.
        self._scale = peak if self._scale is None else max(peak, 0.98 * self._scale)
        if self._shown_levels is None or abs(self._scale / self._shown_levels - 1) > 0.05:
            # the bar's axis repaints when its levels move: only for a change one can see
            self._shown_levels = self._scale
            self.colorbar.setLevels((0.0, self._scale))
        level = np.clip(rms / self._scale, 0.0, 1.0)
        shade = np.round(level * (len(self._brushes) - 1)).astype(int)
        self._dots.setBrush([self._brushes[k] for k in shade])
        inner, outer = 1.0, 1.0 + 0.9 * level
        x = np.empty(2 * len(rms))
        y = np.empty(2 * len(rms))
        x[0::2], x[1::2] = inner * self._ux, outer * self._ux
        y[0::2], y[1::2] = inner * self._uy, outer * self._uy
        self._spokes.setData(x, y)


class SpectrumView(pg.PlotWidget):
    """Welch power spectra of the latest second, mean over channels, log power axis, from 0
    Hz to Nyquist.

    Two curves: the raw stream (as the source delivers it, so mains interference shows as
    peaks at the dashed lines) and the filtered stream the model sees (what the notch and
    band-pass leave of it).
    """

    def __init__(self, sample_rate: float, mains: float | None = 50.0, parent=None):
        super().__init__(parent=parent)
        self.setBackground("w")
        self.setMenuEnabled(False)
        self.setMouseEnabled(x=False, y=False)
        self.hideButtons()
        self.setLogMode(x=False, y=True)
        self.setLabel("bottom", "frequency", units="Hz")
        self.setLabel("left", "power (µV²/Hz)")
        self.getAxis("left").enableAutoSIPrefix(False)
        self.setTitle("Spectrum (latest second)", color="k", size="11pt")
        self.enableAutoRange(False)
        legend = self.addLegend(offset=(-8, 8), labelTextColor="k", brush="#ffffffcc")
        legend.setLabelTextSize("8pt")
        self.raw_curve = self.plot(pen=pg.mkPen("#ff7f0e", width=2), name="raw")
        self.filtered_curve = self.plot(pen=pg.mkPen("#1f77b4", width=2), name="filtered")
        self._mains_lines = []
        self._decades = None
        self.set_rate(sample_rate, mains)

    def set_rate(self, sample_rate: float, mains: float | None = 50.0) -> None:
        self.sample_rate = float(sample_rate)
        for line in self._mains_lines:
            self.removeItem(line)
        self._mains_lines = []
        nyquist = self.sample_rate / 2
        if mains:
            for k in range(1, min(int(nyquist // mains), 4) + 1):
                line = pg.InfiniteLine(
                    k * mains, angle=90,
                    pen=pg.mkPen("#d62728", width=1, style=QtCore.Qt.PenStyle.DashLine),
                    label=f"mains {mains:g} Hz" if k == 1 else None,
                    labelOpts={"position": 0.08, "color": "#d62728", "fill": "#ffffffcc",
                               "anchors": [(0, 1), (0, 1)]})
                self.addItem(line)
                self._mains_lines.append(line)
        self.setXRange(0, nyquist, padding=0.0)
        self._decades = None

    def _spectrum(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        n = min(samples.shape[0], int(self.sample_rate))
        if n < 64:
            return None
        nperseg = min(n, int(2 ** np.floor(np.log2(self.sample_rate / 4))))  # ~4 Hz bins
        freqs, power = welch(samples[-n:], fs=self.sample_rate, nperseg=nperseg, axis=0)
        return freqs, np.maximum(power.mean(axis=1), 1e-12)

    def set_data(self, raw: np.ndarray, filtered: np.ndarray | None = None) -> None:
        """``raw`` and ``filtered`` (time, channels) µV; each uses its latest second."""
        spectra = [self._spectrum(x) if x is not None else None for x in (raw, filtered)]
        for curve, spectrum in zip((self.raw_curve, self.filtered_curve), spectra):
            if spectrum is not None:
                curve.setData(*spectrum)
        powers = [s[1] for s in spectra if s is not None]
        if not powers:
            return
        # The power axis (decades) moves only when the spectra leave it: autoranging on
        # every update would repaint the axes each time for nothing.
        low = np.floor(np.log10(min(np.percentile(p, 1) for p in powers)))
        high = np.ceil(np.log10(max(p.max() for p in powers)))
        if self._decades is None or low < self._decades[0] or high > self._decades[1] \
                or high < self._decades[1] - 1:
            self._decades = (low, high)
            self.setYRange(low, high, padding=0.02)
