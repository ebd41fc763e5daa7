"""Ring buffer: contents, wrap-around, overrun accounting, and readers on other threads.

Samples encode their own number ``i`` (value ``i * C + c`` in channel ``c``, timestamp
``i``), so any sample a reader gets can be checked on its own.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from emgstream.dsp import RingBuffer
from emgstream.dsp import _ring


def _chunk(start, n, n_channels):
    idx = np.arange(start, start + n)
    samples = (idx[:, None] * n_channels + np.arange(n_channels)[None, :]).astype(np.float32)
    return samples, idx.astype(np.float64)


def _assert_numbered(samples, timestamps, first, n_channels):
    """The chunk holds samples first, first+1, ... intact."""
    expected_samples, expected_ts = _chunk(first, len(timestamps), n_channels)
    np.testing.assert_array_equal(timestamps, expected_ts)
    np.testing.assert_array_equal(samples, expected_samples)


def test_write_latest_and_wrap_around():
    rb = RingBuffer(10, 3)
    assert (rb.capacity, rb.n_channels, rb.total_written) == (10, 3, 0)
    s, t = rb.latest(5)
    assert s.shape == (0, 3) and s.dtype == np.float32 and t.shape == (0,)
    total = 0
    for n in (4, 0, 7, 9, 1, 3):  # wraps several times, ends mid-buffer
        rb.write(*_chunk(total, n, 3))
        total += n
        assert rb.total_written == total
        for k in (0, 1, min(total, 10)):
            s, t = rb.latest(k)
            _assert_numbered(s, t, total - k, 3)
    s, t = rb.latest(10)
    s[:] = -1  # a copy: the buffer is not touched
    _assert_numbered(*rb.latest(10), total - 10, 3)
    assert repr(rb) == "<RingBuffer | 3 channels, capacity 10, 24 written>"


def test_latest_before_the_buffer_fills_returns_what_there_is():
    rb = RingBuffer(100, 2)
    rb.write(*_chunk(0, 7, 2))
    s, t = rb.latest(50)
    _assert_numbered(s, t, 0, 2)
    assert len(t) == 7


def test_read_since_sees_every_sample_across_wraps():
    rb = RingBuffer(16, 4)
    rng = np.random.default_rng(0)
    counter, total, got_s, got_t = 0, 0, [], []
    for _ in range(200):
        n = int(rng.integers(0, 16))
        rb.write(*_chunk(total, n, 4))
        total += n
        s, t, counter, lost = rb.read_since(counter)
        assert lost == 0 and counter == total
        got_s.append(s)
        got_t.append(t)
    assert total > 16 * 20  # wrapped many times
    _assert_numbered(np.concatenate(got_s), np.concatenate(got_t), 0, 4)


def test_overrun_reports_the_exact_loss(caplog):
    rb = RingBuffer(10, 2)
    rb.write(*_chunk(0, 6, 2))
    s, t, counter, lost = rb.read_since(0)
    assert (counter, lost) == (6, 0)
    rb.write(*_chunk(6, 9, 2))
    rb.write(*_chunk(15, 4, 2))  # 13 new since the reader's 6; 10 fit
    with caplog.at_level(logging.WARNING, logger="emgstream.dsp._ring"):
        s, t, counter, lost = rb.read_since(counter)
    assert (counter, lost) == (19, 3)
    _assert_numbered(s, t, 9, 2)
    assert "3 samples lost" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emgstream.dsp._ring"):
        assert rb.read_since(counter)[2:] == (19, 0)
    assert caplog.text == ""


def test_chunk_larger_than_capacity_keeps_the_newest():
    rb = RingBuffer(8, 3)
    rb.write(*_chunk(0, 5, 3))
    rb.write(*_chunk(5, 21, 3))
    assert rb.total_written == 26
    _assert_numbered(*rb.latest(8), 18, 3)
    s, t, counter, lost = rb.read_since(2)
    assert (counter, lost) == (26, 16)
    _assert_numbered(s, t, 18, 3)


def test_argument_errors():
    with pytest.raises(ValueError, match="capacity must be a positive integer, got 0"):
        RingBuffer(0, 4)
    with pytest.raises(ValueError, match="n_channels must be a positive integer, got 2.5"):
        RingBuffer(10, 2.5)
    rb = RingBuffer(10, 4)
    with pytest.raises(ValueError, match=r"expected samples of shape \(n, 4\), got \(3, 5\)"):
        rb.write(np.zeros((3, 5)), np.zeros(3))
    with pytest.raises(ValueError, match=r"expected 3 timestamps for 3 samples, got shape \(2,\)"):
        rb.write(np.zeros((3, 4)), np.zeros(2))
    assert rb.total_written == 0
    rb.write(*_chunk(0, 3, 4))
    with pytest.raises(ValueError, match="counter 4 is ahead of the 3 samples written"):
        rb.read_since(4)
    with pytest.raises(ValueError, match="counter must be a non-negative integer, got -1"):
        rb.read_since(-1)
    with pytest.raises(ValueError, match="n must be at most the capacity 10, got 11"):
        rb.latest(11)


def test_a_write_during_the_copy_is_detected(monkeypatch):
    """Force the race: the writer laps the buffer in the middle of a reader's copy."""
    rb = RingBuffer(10, 2)
    rb.write(*_chunk(0, 10, 2))
    real_read = _ring.ring_read
    pending = [_chunk(10, 4, 2)]  # overwrites slots of samples 0..3

    def read_while_writing(*args):
        if pending:
            rb.write(*pending.pop())
        real_read(*args)

    monkeypatch.setattr(_ring, "ring_read", read_while_writing)
    s, t, counter, lost = rb.read_since(0)  # planned 0..9 from total 10; 0..3 torn
    assert (counter, lost) == (10, 4)
    _assert_numbered(s, t, 4, 2)
    pending.append(_chunk(14, 3, 2))
    _assert_numbered(*rb.latest(10), 7, 2)  # retried after the torn first copy


def test_latest_returns_even_when_every_copy_is_lapped(monkeypatch):
    rb = RingBuffer(10, 2)
    rb.write(*_chunk(0, 10, 2))
    real_read = _ring.ring_read
    laps = []

    def read_while_lapping(*args):
        if not rb._write_lock.locked():  # a writer that laps every unlocked copy
            total = rb.total_written
            rb.write(*_chunk(total, 10, 2))
            laps.append(total)
        real_read(*args)

    monkeypatch.setattr(_ring, "ring_read", read_while_lapping)
    s, t = rb.latest(8)
    assert len(laps) == _ring._OPTIMISTIC_TRIES  # then it copied under the writer's lock
    _assert_numbered(s, t, rb.total_written - 8, 2)


def test_one_writer_many_readers_on_threads():
    n_channels, capacity, n_total = 4, 64, 60_000
    rb = RingBuffer(capacity, n_channels)
    done = threading.Event()
    errors: list[BaseException] = []
    tallies: list[tuple[int, int, int]] = []  # (received, lost, final counter) per reader

    def writer():
        rng = np.random.default_rng(1)
        total = 0
        while total < n_total:
            n = int(min(rng.integers(1, 40), n_total - total))
            rb.write(*_chunk(total, n, n_channels))
            total += n
        done.set()

    def reader(seed):
        rng = np.random.default_rng(seed)
        counter = received = lost_total = 0
        try:
            while True:
                finished = done.is_set()
                s, t, new_counter, lost = rb.read_since(counter)
                _assert_numbered(s, t, counter + lost, n_channels)
                assert new_counter == counter + lost + len(t)
                received += len(t)
                lost_total += lost
                counter = new_counter
                if finished:
                    break
                if rng.random() < 0.05:  # fall behind now and then to provoke overruns
                    done.wait(0.001)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)
        tallies.append((received, lost_total, counter))

    def viewer():
        try:
            while not done.is_set():
                s, t = rb.latest(capacity // 2)
                if len(t):
                    _assert_numbered(s, t, int(t[0]), n_channels)
                    assert len(t) == min(capacity // 2, int(t[-1]) + 1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(seed,)) for seed in (2, 3)]
    threads += [threading.Thread(target=viewer), threading.Thread(target=writer)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not any(th.is_alive() for th in threads)
    assert not errors, errors[0]
    assert rb.total_written == n_total
    assert len(tallies) == 2
    for received, lost, counter in tallies:
        assert counter == n_total and received + lost == n_total
    assert sum(lost for _, lost, _ in tallies) > 0  # the overrun path was exercised
