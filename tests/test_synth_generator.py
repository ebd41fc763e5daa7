"""The synthetic generator: determinism, pose/label alignment, EMG caused by the pose,
per-user variability, artifacts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from emgstream.synth import (CLASS_NAMES, GESTURES, JOINT_NAMES, UNSEEN_GESTURES, SynthConfig,
                             SynthStream, generate_session, make_session, make_user, make_users)

RATE = 2000.0


def _filtered(emg, rate=RATE, mains=50.0):
    sos = [signal.butter(4, [20, 450], "bandpass", fs=rate, output="sos")]
    sos += [signal.tf2sos(*signal.iirnotch(f, 30, fs=rate)) for f in (mains, 2 * mains,
                                                                       3 * mains)]
    return signal.sosfilt(np.concatenate(sos), emg.astype(np.float64), axis=0)


def _hold_mask(labels, name, margin):
    """Samples well inside runs of gesture ``name`` (margin samples from each edge)."""
    code = CLASS_NAMES.index(name)
    inside = labels == code
    run = np.ones(2 * margin + 1)
    return np.convolve(inside, run, mode="same") == len(run)


@pytest.fixture(scope="module")
def session():
    user = make_users(1, seed=7)[0]
    return generate_session(user, session=0, duration_s=90.0)


def test_vocabulary():
    assert len(GESTURES) >= 12 and len(UNSEEN_GESTURES) >= 4
    assert not set(GESTURES) & set(UNSEEN_GESTURES)
    assert CLASS_NAMES[:len(GESTURES)] == GESTURES and GESTURES[0] == "rest"
    assert JOINT_NAMES[0] == "THUMB_CMC_FE" and JOINT_NAMES[4] == "INDEX_MCP_AA"
    assert JOINT_NAMES[-1] == "PINKY_DIP_FE" and len(JOINT_NAMES) == 20


def test_session_shapes_and_types(session):
    assert session.emg.dtype == np.float32 and session.emg.shape == (180000, 16)
    assert session.labels.dtype == np.int16 and session.pose.shape == (180000, 20)
    assert session.class_names == list(CLASS_NAMES)
    assert np.isfinite(session.emg).all() and np.isfinite(session.pose).all()
    # only the training vocabulary is performed by default, and every gesture of it
    assert set(np.unique(session.labels)) == set(range(len(GESTURES)))
    assert session.user == "synth000" and session.session == "0"


def test_deterministic_by_seed():
    a = generate_session(make_user(2, seed=5), 1, 3.0)
    b = generate_session(make_user(2, seed=5), 1, 3.0)
    np.testing.assert_array_equal(a.emg, b.emg)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.pose, b.pose)
    other_seed = generate_session(make_user(2, seed=6), 1, 3.0)
    other_session = generate_session(make_user(2, seed=5), 2, 3.0)
    assert not np.allclose(a.emg, other_seed.emg)
    assert not np.allclose(a.emg, other_session.emg)


def test_user_does_not_depend_on_population_size():
    a, b = make_users(5, seed=3)[3], make_user(3, seed=3)
    assert a.rotation == b.rotation
    np.testing.assert_array_equal(a.activation_style, b.activation_style)


def test_stream_is_independent_of_block_sizes():
    user = make_user(1, seed=2)
    whole = SynthStream(user, 0).generate(9000)
    stream = SynthStream(user, 0)
    parts = [stream.generate(n) for n in (1, 19, 40, 333, 2000, 6607)]
    emg, labels, pose = (np.concatenate(p) for p in zip(*parts))
    np.testing.assert_array_equal(labels, whole[1])
    np.testing.assert_allclose(pose, whole[2], rtol=1e-6, atol=1e-6)
    # FFT round-off only
    np.testing.assert_allclose(emg, whole[0], rtol=1e-4, atol=1e-2)


def test_pose_follows_the_labels(session):
    pose, labels = session.pose, session.labels
    margin = int(0.6 * RATE)  # past the onset movement
    rest = pose[_hold_mask(labels, "rest", margin)].mean(0)
    fist = pose[_hold_mask(labels, "fist", margin)].mean(0)
    open_hand = pose[_hold_mask(labels, "open_hand", margin)].mean(0)
    point = pose[_hold_mask(labels, "point", margin)].mean(0)
    pinch = pose[_hold_mask(labels, "pinch_index", margin)].mean(0)
    flexion = [JOINT_NAMES.index(f"{f}_{j}") for f in ("INDEX", "MIDDLE", "RING", "PINKY")
               for j in ("MCP_FE", "PIP_FE")]
    assert (fist[flexion] > rest[flexion] + 0.5).all()  # a fist is flexed
    assert (open_hand[flexion] < rest[flexion]).all()  # an open hand is extended
    index_pip, middle_pip = JOINT_NAMES.index("INDEX_PIP_FE"), JOINT_NAMES.index("MIDDLE_PIP_FE")
    assert point[index_pip] < rest[index_pip] < point[middle_pip]  # index out, others curled
    assert pinch[index_pip] > pinch[middle_pip] + 0.3
    # never an IK-failure-like all-zero pose
    assert np.abs(pose).max(axis=1).min() > 0.05


def test_motion_is_smooth(session):
    velocity = np.diff(session.pose, axis=0) * RATE
    assert np.abs(velocity).max() < 30.0  # rad/s: min-jerk movements, no jumps


def test_emg_is_caused_by_the_gesture(session):
    emg = _filtered(session.emg)[4000:]
    labels = session.labels[4000:]
    margin = int(0.6 * RATE)
    rms = {name: np.sqrt((emg[_hold_mask(labels, name, margin)[:len(emg)]] ** 2).mean(0))
           for name in ("rest", "fist", "open_hand", "wrist_extension")}
    assert rms["fist"].max() > 4 * rms["rest"].max()
    # different gestures light up different electrodes
    pattern = {k: v / np.linalg.norm(v) for k, v in rms.items()}
    assert pattern["fist"] @ pattern["open_hand"] < 0.95


def test_emg_spectrum_is_semg_like(session):
    emg = _filtered(session.emg)[4000:]
    active = session.labels[4000:] == CLASS_NAMES.index("fist")
    channel = np.argmax((emg[active] ** 2).mean(0))
    freqs, psd = signal.welch(emg[active, channel], fs=RATE, nperseg=512)
    cumulative = np.cumsum(psd) / psd.sum()
    median = freqs[np.searchsorted(cumulative, 0.5)]
    assert 60.0 < median < 160.0
    band = (freqs >= 20) & (freqs <= 450)
    assert psd[band].sum() / psd.sum() > 0.95


def test_users_differ_more_than_sessions():
    """Cross-user shift of the spatial pattern exceeds a re-donning's (the realism
    benchmark measures what that does to a classifier)."""
    def pattern(user, sess):
        s = generate_session(user, sess, 12.0, gestures=("rest", "fist"))
        emg = _filtered(s.emg)[4000:]
        active = s.labels[4000:] == CLASS_NAMES.index("fist")
        p = np.sqrt((emg[active] ** 2).mean(0))
        return p / np.linalg.norm(p)

    users = make_users(4, seed=11)
    first = [pattern(u, 0) for u in users]
    same = [first[i] @ pattern(users[i], 1) for i in range(2)]
    across = [first[0] @ p for p in first[1:]]
    assert min(same) > max(across) - 0.02
    assert min(same) > 0.9


def test_unseen_gestures_only_on_request():
    user = make_user(0, seed=1)
    seen = generate_session(user, 0, 30.0)
    unseen_codes = [CLASS_NAMES.index(g) for g in UNSEEN_GESTURES]
    assert not np.isin(seen.labels, unseen_codes).any()
    unseen = generate_session(user, 0, 30.0, gestures=UNSEEN_GESTURES)
    assert set(np.unique(unseen.labels)) <= {0, *unseen_codes}
    assert np.isin(unseen.labels, unseen_codes).any()


def test_artifacts_dead_and_saturated_channel_and_mains():
    config = SynthConfig(dead_channel_p=1.0, mains_hz=60.0, mains_uv=(40.0, 40.0))
    user = make_user(0, seed=0, config=config)
    sess = make_session(user, 0)
    s = generate_session(user, 0, 5.0)
    dead = sess.dead_channel
    assert dead >= 0
    rms = np.sqrt((s.emg.astype(np.float64) ** 2).mean(0))
    assert rms[dead] < 0.2 * np.median(rms)
    live = (dead + 4) % 16
    freqs, psd = signal.welch(s.emg[:, live], fs=RATE, nperseg=2000)
    peak = freqs[(freqs > 30) & (freqs < 400)][np.argmax(psd[(freqs > 30) & (freqs < 400)])]
    assert peak == 60.0

    config = SynthConfig(saturated_channel_p=1.0, dead_channel_p=0.0)
    user = make_user(0, seed=0, config=config)
    ch = make_session(user, 0).saturated_channel
    s = generate_session(user, 0, 2.0)
    assert np.mean(np.abs(s.emg[:, ch]) >= config.rail_uv - 1e-3) > 0.9


def test_other_band_geometry():
    config = SynthConfig(n_channels=8, sample_rate=1000.0)
    s = generate_session(make_user(0, 0, config), 0, 4.0)
    assert s.emg.shape == (4000, 8) and s.sample_rate == 1000.0


@pytest.mark.parametrize("kwargs, message", [
    ({"n_channels": 0}, "n_channels"),
    ({"sample_rate": -1.0}, "sample_rate"),
    ({"dead_channel_p": 2.0}, "dead_channel_p"),
])
def test_bad_config_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SynthConfig(**kwargs)


def test_unknown_gesture_is_refused():
    with pytest.raises(ValueError, match="gesture"):
        SynthStream(make_user(0), 0, gestures=("rest", "moonwalk"))
