"""Filter design and the streaming causal filter against scipy.

Tolerance of the equality tests: the reference is ``scipy.signal.sosfilt`` in float64 on the
same float32 input; ours computes in float64 too and rounds the output to float32, which
is off by at most half a float32 ulp (2**-24 relative). We allow one ulp (rtol 2**-23) plus
1e-9 of the peak for float64 differences in the order of operations near zero crossings.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import signal

from emgstream.dsp import StreamingFilter, design_filters, filter_offline, make_filter
from emgstream.modelfile import Preprocessing

RATES = (2000.0, 1000.0, 500.0)  # 500 Hz clamps the 450 Hz edge to 225 Hz; 1000 Hz sits at it


def _reference(sos, x):
    """scipy over the whole signal with the steady-state start of the first sample."""
    zi = signal.sosfilt_zi(sos)[:, :, None] * x[0].astype(np.float64)[None, None, :]
    y, _ = signal.sosfilt(sos, x, axis=0, zi=zi)
    return y


def _assert_float32_equal(ours, ref):
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    peak = float(np.abs(ref).max()) if ref.size else 0.0
    np.testing.assert_allclose(ours, ref, rtol=2.0 ** -23, atol=1e-9 * peak)


def _emg_like(rng, n, n_channels, rate):
    """Noise plus DC offsets and 50 Hz mains, in µV."""
    t = np.arange(n) / rate
    x = rng.normal(0.0, 30.0, (n, n_channels)) + rng.uniform(-500, 500, n_channels)
    x += 40.0 * np.sin(2 * np.pi * 50.0 * t)[:, None]
    return x.astype(np.float32)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), n_channels=st.integers(1, 20), rate=st.sampled_from(RATES),
       notch=st.sampled_from([None, 50.0, 60.0]), harmonics=st.integers(1, 3),
       n=st.integers(1, 400), seed=st.integers(0, 2**32 - 1))
def test_any_split_equals_scipy(data, n_channels, rate, notch, harmonics, n, seed):
    sos = design_filters(rate, notch=notch, harmonics=harmonics)
    x = _emg_like(np.random.default_rng(seed), n, n_channels, rate)
    sizes = []
    while sum(sizes) < n:  # chunk sizes 0 (allowed) to 40, many of size 1
        sizes.append(data.draw(st.one_of(st.just(1), st.integers(0, 40)), label="chunk"))
    bounds = np.cumsum([0, *sizes])
    f = StreamingFilter(sos, n_channels)
    ours = np.concatenate([f.process(x[a:min(b, n)]) for a, b in zip(bounds, bounds[1:])])
    _assert_float32_equal(ours, _reference(sos, x))


@pytest.mark.parametrize("rate", RATES)
def test_one_sample_chunks_over_a_long_signal(rate):
    x = _emg_like(np.random.default_rng(1), 3000, 3, rate)
    sos = design_filters(rate, harmonics=3)
    f = StreamingFilter(sos, 3)
    ours = np.concatenate([f.process(x[i:i + 1]) for i in range(len(x))])
    _assert_float32_equal(ours, _reference(sos, x))


def test_dc_input_starts_in_steady_state():
    rate, n_channels = 2000.0, 16
    offsets = np.linspace(-800.0, 800.0, n_channels)
    x = np.tile(offsets.astype(np.float32), (400, 1))
    sos = design_filters(rate)
    y = StreamingFilter(sos, n_channels).process(x)
    assert np.abs(y).max() < 1e-6 * np.abs(offsets).max()  # no ringing from sample 0
    # the same input from zero state rings at the offset's scale: the test can fail
    cold = signal.sosfilt(sos, x, axis=0)
    assert np.abs(cold).max() > 0.1 * np.abs(offsets).max()


@pytest.mark.parametrize("mains", [50.0, 60.0])
def test_notch_attenuates_mains_and_passes_the_band(mains):
    rate = 2000.0
    notch_only = design_filters(rate, bandpass=None, notch=mains, harmonics=3)
    freqs = np.array([mains, 2 * mains, 3 * mains, mains + 20.0, 2.5 * mains])
    _, h = signal.freqz_sos(notch_only, worN=freqs, fs=rate)
    gain_db = 20 * np.log10(np.abs(h) + 1e-300)
    assert (gain_db[:3] < -60).all()  # zeros on the unit circle at each harmonic
    assert (np.abs(gain_db[3:]) < 0.5).all()  # flat away from them (Q = 30)

    # the full chain on a sine, streamed in 20-sample chunks, after the notch settles
    t = np.arange(int(3 * rate)) / rate
    f = make_filter(Preprocessing(sample_rate=rate, n_channels=1, window=100, hop=20,
                                  notch=mains))
    for freq, lo, hi in ((mains, 0.0, 0.01), (2.5 * mains, 0.9, 1.05)):
        x = (100 * np.sin(2 * np.pi * freq * t)).astype(np.float32)[:, None]
        f.reset()
        y = np.concatenate([f.process(x[i:i + 20]) for i in range(0, len(x), 20)])
        settled = slice(int(rate), None)
        ratio = np.sqrt(np.mean(y[settled] ** 2) / np.mean(x[settled] ** 2))
        assert lo <= ratio <= hi, (freq, ratio)


def test_bandpass_edges_and_clamp_below_nyquist(caplog):
    for rate, expected_high in ((2000.0, 450.0), (1000.0, 450.0), (500.0, 225.0)):
        with caplog.at_level(logging.INFO, logger="emgstream.dsp._filters"):
            caplog.clear()
            sos = design_filters(rate, notch=None)
        assert sos.shape == (4, 6) and sos.dtype == np.float64
        _, h = signal.freqz_sos(sos, worN=[20.0, expected_high, np.sqrt(20 * expected_high)],
                                fs=rate)
        np.testing.assert_allclose(np.abs(h), [2 ** -0.5, 2 ** -0.5, 1.0], atol=1e-3)
        assert ("clamped" in caplog.text) == (expected_high < 450.0)


def test_notch_harmonics_at_or_above_nyquist_are_skipped():
    assert design_filters(500.0, bandpass=None, notch=50.0, harmonics=10).shape == (4, 6)
    assert design_filters(2000.0, bandpass=None, notch=60.0, harmonics=2).shape == (2, 6)
    assert design_filters(2000.0, bandpass=(20, 450), order=2, notch=50.0).shape == (3, 6)
    assert design_filters(2000.0, bandpass=None, notch=None).shape == (0, 6)
    assert design_filters(80.0, bandpass=None, notch=50.0).shape == (0, 6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(rate=0), "rate must be a positive finite number, got 0"),
    (dict(rate=-2000.0), "rate must be a positive"),
    (dict(rate=float("nan")), "rate must be a positive"),
    (dict(rate=2000, bandpass=(450, 20)), r"low edge must be below the high edge.*\(450, 20\)"),
    (dict(rate=2000, bandpass=(20,)), r"must be \(low, high\) in Hz or None, got \(20,\)"),
    (dict(rate=2000, bandpass=450), "bandpass must be"),
    (dict(rate=2000, bandpass=(0, 450)), "bandpass low edge must be a positive"),
    (dict(rate=500, bandpass=(300, 450)), "clamped to 225 Hz"),
    (dict(rate=2000, order=0), "order must be a positive integer, got 0"),
    (dict(rate=2000, notch=-50), "notch must be a positive finite number, got -50"),
    (dict(rate=2000, notch="50"), "notch must be a positive"),
    (dict(rate=2000, harmonics=0), "harmonics must be a positive integer, got 0"),
    (dict(rate=2000, notch_q=0), "notch_q must be a positive"),
])
def test_design_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        design_filters(**kwargs)


def test_wrong_chunk_shapes_and_sos():
    f = StreamingFilter(design_filters(2000.0), 16)
    with pytest.raises(ValueError, match=r"expected a chunk of shape \(n, 16\), got \(20, 8\)"):
        f.process(np.zeros((20, 8), np.float32))
    with pytest.raises(ValueError, match=r"got \(20,\)"):
        f.process(np.zeros(20, np.float32))
    with pytest.raises(ValueError, match=r"shape \(n_sections, 6\), got \(2, 5\)"):
        StreamingFilter(np.ones((2, 5)), 4)
    bad = design_filters(2000.0)
    bad[0, 3] = 2.0
    with pytest.raises(ValueError, match="a0"):
        StreamingFilter(bad, 4)
    with pytest.raises(ValueError, match="n_channels must be a positive integer, got 0"):
        StreamingFilter(design_filters(2000.0), 0)


def test_empty_chunks_nan_rejection_reset_and_out():
    rng = np.random.default_rng(2)
    sos = design_filters(2000.0)
    x = _emg_like(rng, 300, 5, 2000.0)
    ref = _reference(sos, x)
    f = StreamingFilter(sos, 5)
    assert f.process(np.zeros((0, 5), np.float32)).shape == (0, 5)  # does not start it
    parts = [f.process(x[:100])]
    poisoned = x[100:150].copy()
    poisoned[7, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite sample at row 7, channel 3"):
        f.process(poisoned)
    out = np.empty((200, 5), np.float32)
    assert f.process(x[100:], out=out) is out  # the NaN chunk left the state unchanged
    parts.append(out)
    _assert_float32_equal(np.concatenate(parts), ref)

    f.reset()
    inplace = x.copy()
    f.process(inplace, out=inplace)
    _assert_float32_equal(inplace, ref)
    with pytest.raises(ValueError, match="out must be a C-contiguous float32"):
        f.process(x, out=np.empty((300, 5), np.float64))
    assert repr(f) == "<StreamingFilter | 5 sections, 5 channels, running>"


def test_no_sections_is_identity():
    x = _emg_like(np.random.default_rng(3), 50, 2, 2000.0)
    f = StreamingFilter(design_filters(2000.0, bandpass=None, notch=None), 2)
    np.testing.assert_array_equal(f.process(x), x)


def test_filter_offline_is_the_live_chain():
    rate = 1000.0
    pre = Preprocessing(sample_rate=rate, n_channels=6, window=200, hop=50, notch=60.0,
                        notch_harmonics=2)
    x = _emg_like(np.random.default_rng(4), 2500, 6, rate)
    offline = filter_offline(x, rate, pre)
    live = make_filter(pre)
    streamed = np.concatenate([live.process(x[i:i + 37]) for i in range(0, len(x), 37)])
    np.testing.assert_array_equal(offline, streamed)
    sos = design_filters(rate, bandpass=(20.0, 450.0), order=4, notch=60.0, harmonics=2)
    np.testing.assert_array_equal(live.sos, sos)
    _assert_float32_equal(offline, _reference(sos, x))
    # float64 input is filtered as the float32 a live chunk would be
    np.testing.assert_array_equal(filter_offline(x.astype(np.float64), rate, pre), offline)

    with pytest.raises(ValueError, match="rate 2000 Hz does not match .* 1000.0"):
        filter_offline(x, 2000.0, pre)
    with pytest.raises(ValueError, match=r"expected x of shape \(time, 6\), got \(2500, 5\)"):
        filter_offline(x[:, :5], rate, pre)


def test_non_contiguous_and_float64_chunks_are_filtered_as_float32():
    rng = np.random.default_rng(5)
    sos = design_filters(2000.0)
    x = _emg_like(rng, 200, 4, 2000.0)
    expected = StreamingFilter(sos, 4).process(x)
    wide = np.zeros((200, 8), np.float32, order="F")
    wide[:, ::2] = x
    np.testing.assert_array_equal(StreamingFilter(sos, 4).process(wide[:, ::2]), expected)
    np.testing.assert_array_equal(StreamingFilter(sos, 4).process(x.astype(np.float64)),
                                  expected)
