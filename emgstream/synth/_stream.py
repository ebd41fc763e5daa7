"""The generator: one user wearing the band for one session, produced block by block.

Processing order, per block of samples:

1. **Plan** (extended lazily, one repetition at a time): rest -> onset movement -> hold ->
   release movement -> rest, or now and then straight on to the next gesture. Each
   repetition draws its own target pose (the user's style plus jitter), intensity and
   durations. Movements follow a minimum-jerk profile (Flash & Hogan).
2. **Control frames** at ``control_rate`` (100 Hz): pose (plan + slow drift), joint
   velocity, and from them each muscle's activation: posture drive
   ``relu(W (q - q_rest))``, motion drive ``relu(W dq)``, grip force, times the user's
   per-gesture recruitment style and muscle gains, plus co-contraction of the antagonist,
   slow fluctuation, and a soft saturation. Baseline wander is computed here too.
3. **Samples**: frames interpolated linearly to the sample rate; each muscle's carrier is
   white noise through its own FIR (sEMG spectrum shifted by the user's conduction
   velocity, low-passed by the tissue between muscle and skin: fat plus depth);
   amplitude-modulated by its activation; spread to the electrodes by a volume-conductor
   kernel of the distance between muscle and electrode in the forearm's cross-section
   (band rotation and fat change it); then per-channel gain, electrode noise, mains with
   harmonics, baseline wander, motion spikes, a dead or saturated channel.

Every random draw comes from its own stream (plan, frames, carriers, noise), so the output
does not depend on how the samples are split into blocks (up to FFT round-off).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal

from .._checks import check_option, check_positive_int
from ._anatomy import ANTAGONIST, MUSCLE_WEIGHTS, N_MUSCLES
from ._hand import CLASS_NAMES, GESTURES, N_DOFS, N_JOINTS, TARGET_POSES
from ._users import SessionProfile, UserProfile, grip_force, make_session

__all__ = ["SynthStream"]

_PLAN, _DRIFT, _FLUCT, _WANDER, _CARRIERS, _NOISE = 10, 11, 12, 13, 14, 15
_FIR_TAPS = 129
_POSTURE_GAIN = 0.3  # activation per rad of posture drive
_MOTION_GAIN = 0.06  # activation per rad/s of motion drive
_TONE = 0.02  # resting muscle tone
_DRIFT_RAD = 0.03  # slow postural drift while holding
_DRIFT_HZ = 0.5
_FLUCTUATION = 0.15  # log-normal spread of activation fluctuation
_FLUCTUATION_HZ = 2.0
_WANDER_HZ = (0.05, 0.6)
_SPECTRUM_HZ = (65.0, 170.0)  # high-pass corner and low-pass corner of the muscle spectrum
_TISSUE_HZ = 500.0  # tissue low-pass corner for a source 0 cm under the skin (/(1 + cm))
_SPIKE_TAU_S = (0.02, 0.15)


class SynthStream:
    """A synthetic user performing gestures, produced incrementally with state carried.

    Parameters
    ----------
    user : UserProfile
        From :func:`make_users` / :func:`make_user`; carries the :class:`SynthConfig`.
    session : int
        Which donning of the band (rotation, gains, artifacts).
    gestures : sequence of str
        Gestures to perform, from :data:`CLASS_NAMES`; ``rest`` is performed between them
        anyway. Shuffled rounds, every gesture once per round.

    Attributes
    ----------
    class_names : list of str
        :data:`CLASS_NAMES`; labels index it, so labels agree across all synthetic data.
    """

    def __init__(self, user: UserProfile, session: int = 0,
                 gestures: Sequence[str] = GESTURES) -> None:
        gestures = list(gestures)
        if not gestures:
            raise ValueError("gestures must name at least one gesture")
        for name in gestures:
            check_option(name, "gesture", CLASS_NAMES)
        self.user = user
        self.session: SessionProfile = make_session(user, session)
        self.config = config = user.config
        self.class_names = list(CLASS_NAMES)
        self.n_channels = config.n_channels
        self.sample_rate = config.sample_rate
        self._active = [CLASS_NAMES.index(g) for g in gestures if g != "rest"] or [0]
        key = [user.seed, user.index, session]
        self._plan_rng = np.random.default_rng(key + [_PLAN])
        self._drift_rng = np.random.default_rng(key + [_DRIFT])
        self._fluct_rng = np.random.default_rng(key + [_FLUCT])
        self._carrier_rng = np.random.default_rng(key + [_CARRIERS])
        self._noise_rng = np.random.default_rng(key + [_NOISE])
        self._step = max(1, round(self.sample_rate / config.control_rate))
        self._init_plan()
        self._init_frames()
        self._init_signal()
        self._sent = 0

    def __repr__(self) -> str:
        return (f"<SynthStream user {self.user.index} session {self.session.index}: "
                f"{self.n_channels} ch @ {self.sample_rate:g} Hz, "
                f"{self._sent / self.sample_rate:.1f} s produced>")

    # -- public -----------------------------------------------------------------------------
    def generate(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Produce the next ``n`` samples.

        Returns
        -------
        emg : ndarray, float32, shape (n, channels)
            Raw (unfiltered) microvolts.
        labels : ndarray, int16, shape (n,)
            Index into :attr:`class_names`. A gesture's label starts with its onset
            movement and ends where its release begins (the release is labelled rest).
        pose : ndarray, float64, shape (n, 20)
            Joint angles in radians, emg2pose joint order.
        """
        check_positive_int(n, "n")
        first, stop = self._sent, self._sent + n
        while self._plan_end < stop + 2 * self._step:
            self._extend_plan()
        index = np.arange(first, stop)
        starts = np.asarray(self._seg_start)
        labels = np.asarray(self._seg_label, dtype=np.int16)[
            np.searchsorted(starts, index, side="right") - 1]
        frames = self._interpolated_frames(first, stop)
        pose = frames[:, :N_JOINTS].astype(np.float64)
        activation = frames[:, N_DOFS:N_DOFS + N_MUSCLES]
        wander = frames[:, N_DOFS + N_MUSCLES:]
        emg = self._emg(index, activation, wander)
        self._sent = stop
        self._forget_plan_before(min(stop, (self._frame0 + len(self._frames)) * self._step))
        return emg.astype(np.float32), labels, pose

    # -- 1. plan ---------------------------------------------------------------------------
    def _init_plan(self) -> None:
        u = self.user
        self._rest_pose = TARGET_POSES[0] + u.pose_offsets[0]
        self._forces = np.stack([grip_force(name) for name in CLASS_NAMES])
        self._seg_start: list[int] = []
        self._seg_label: list[int] = []
        self._seg_move: list[bool] = []
        self._seg_q: list[tuple[np.ndarray, np.ndarray]] = []
        self._seg_drive: list[tuple[np.ndarray, np.ndarray]] = []  # (force, style) pairs
        self._plan_end = 0
        self._round: list[int] = []
        self._spikes: list[tuple[int, float, np.ndarray]] = []  # (start, tau samples, amps)
        rest_drive = np.concatenate([np.zeros(N_MUSCLES), u.activation_style[0]])
        self._q_end, self._drive_end = self._rest_pose.copy(), rest_drive
        self._add_segment(0, self._q_end, self._drive_end, self._duration(self.config.rest_s),
                          move=False)

    def _duration(self, mean_s: float) -> int:
        return max(1, round(mean_s * self._plan_rng.uniform(0.7, 1.3) * self.sample_rate))

    def _add_segment(self, label, q, drive, length, move) -> None:
        if move and self.config.spike_at_onset > self._plan_rng.random():
            self._add_spike(self._plan_end)
        self._seg_start.append(self._plan_end)
        self._seg_label.append(label)
        self._seg_move.append(move)
        self._seg_q.append((self._q_end, q))
        self._seg_drive.append((self._drive_end, drive))
        self._q_end, self._drive_end = q, drive
        self._plan_end += length

    def _forget_plan_before(self, sample: int) -> None:
        """Drop segments that ended before ``sample`` (an endless stream stays small)."""
        cut = int(np.searchsorted(self._seg_start, sample, side="right")) - 1
        if cut > 0:
            for seq in (self._seg_start, self._seg_label, self._seg_move, self._seg_q,
                        self._seg_drive):
                del seq[:cut]

    def _add_spike(self, start: int) -> None:
        rng = self._plan_rng
        tau = rng.uniform(*_SPIKE_TAU_S) * self.sample_rate
        amps = rng.normal(0.0, 1.0, self.n_channels) * rng.uniform(100, 800)
        self._spikes.append((start, tau, amps))

    def _extend_plan(self) -> None:
        """Append one repetition of the next gesture."""
        cfg, rng, u = self.config, self._plan_rng, self.user
        if not self._round:
            self._round = list(rng.permutation(self._active))
        g = int(self._round.pop())
        start = self._plan_end
        depth = rng.uniform(0.85, 1.05)  # how far this repetition goes
        target = self._rest_pose + depth * (TARGET_POSES[g] + u.pose_offsets[g]
                                            - self._rest_pose)
        target = target + rng.normal(0.0, cfg.rep_pose_jitter, N_DOFS)
        force = self._forces[g] * np.exp(rng.normal(0.0, cfg.rep_force_spread))
        drive = np.concatenate([force, u.activation_style[g]])
        self._add_segment(g, target, drive, self._duration(cfg.move_s), move=True)
        self._add_segment(g, target, drive, self._duration(cfg.hold_s), move=False)
        if rng.random() >= cfg.direct_transition:
            rest = self._rest_pose + rng.normal(0.0, cfg.rep_pose_jitter / 2, N_DOFS)
            rest_drive = np.concatenate([np.zeros(N_MUSCLES), u.activation_style[0]])
            self._add_segment(0, rest, rest_drive, self._duration(cfg.move_s), move=True)
            self._add_segment(0, rest, rest_drive, self._duration(cfg.rest_s), move=False)
        n_random = rng.poisson(cfg.spike_rate_hz * (self._plan_end - start) / self.sample_rate)
        for at in np.sort(rng.integers(start, self._plan_end, n_random)):
            self._add_spike(int(at))

    # -- 2. control frames ------------------------------------------------------------------
    def _init_frames(self) -> None:
        u, cfg, c = self.user, self.config, self.config.n_channels
        rate = cfg.sample_rate / self._step
        self._drift_sos = signal.butter(1, _DRIFT_HZ, fs=rate, output="sos")
        self._fluct_sos = signal.butter(1, _FLUCTUATION_HZ, fs=rate, output="sos")
        # unit-variance output of the first-order low-pass of unit white noise
        self._drift_norm = np.sqrt(rate / (np.pi * _DRIFT_HZ))
        self._fluct_norm = np.sqrt(rate / (np.pi * _FLUCTUATION_HZ))
        self._drift_zi = np.zeros((1, 2, N_DOFS))
        self._fluct_zi = np.zeros((1, 2, N_MUSCLES))
        rng = np.random.default_rng([u.seed, u.index, self.session.index, _WANDER])
        self._wander_f = rng.uniform(*_WANDER_HZ, (2, c))
        self._wander_phase = rng.uniform(0, 2 * np.pi, (2, c))
        self._wander_amp = cfg.baseline_uv * rng.uniform(0.2, 1.0, (2, c))
        self._frames = np.zeros((0, N_DOFS + N_MUSCLES + c))
        self._frame0 = 0  # frame index of self._frames[0]

    def _compute_frames(self, j0: int, j1: int) -> np.ndarray:
        """Frames ``j0 .. j1-1`` (must be called in order): (frames, 23 + muscles + C)."""
        t = np.arange(j0, j1) * self._step  # sample index of each frame
        seg = np.searchsorted(np.asarray(self._seg_start), t, side="right") - 1
        starts = np.asarray(self._seg_start + [self._plan_end])
        length = (starts[seg + 1] - starts[seg]).astype(float)
        tau = np.clip((t - starts[seg]) / length, 0.0, 1.0)
        s = tau ** 3 * (10 - 15 * tau + 6 * tau ** 2)  # minimum jerk
        ds = 30 * tau ** 2 * (1 - tau) ** 2 * self.sample_rate / length  # per second
        move = np.asarray(self._seg_move)[seg]
        q0, q1 = (np.stack(ends)[seg] for ends in zip(*self._seg_q))
        d0, d1 = (np.stack(ends)[seg] for ends in zip(*self._seg_drive))
        s, ds = np.where(move, s, 1.0)[:, None], np.where(move, ds, 0.0)[:, None]
        white = self._drift_rng.standard_normal((len(t), N_DOFS))
        drift, self._drift_zi = signal.sosfilt(self._drift_sos, white, axis=0,
                                               zi=self._drift_zi)
        q = q0 + (q1 - q0) * s + _DRIFT_RAD * self._drift_norm * drift
        dq = (q1 - q0) * ds
        drive = d0 + (d1 - d0) * s
        force, style = drive[:, :N_MUSCLES], drive[:, N_MUSCLES:]
        activation = (_POSTURE_GAIN * np.maximum(_mix(q - self._rest_pose, MUSCLE_WEIGHTS), 0)
                      + _MOTION_GAIN * np.maximum(_mix(dq, MUSCLE_WEIGHTS), 0) + force)
        activation = activation * style * self.user.muscle_gain
        activation = activation + self.user.cocontraction * activation[:, ANTAGONIST] + _TONE
        fluct = self._lowpass_noise(len(t))
        activation = activation * np.exp(_FLUCTUATION * self._fluct_norm * fluct)
        activation = 1.0 - np.exp(-activation)  # recruitment saturates
        seconds = t / self.sample_rate
        wander = np.einsum("kc,tkc->tc", self._wander_amp, np.sin(
            2 * np.pi * self._wander_f[None] * seconds[:, None, None] + self._wander_phase))
        return np.concatenate([q, activation, wander], axis=1)

    def _lowpass_noise(self, n: int) -> np.ndarray:
        white = self._fluct_rng.standard_normal((n, N_MUSCLES))
        out, self._fluct_zi = signal.sosfilt(self._fluct_sos, white, axis=0, zi=self._fluct_zi)
        return out

    def _interpolated_frames(self, first: int, stop: int) -> np.ndarray:
        """Frames linearly interpolated to samples ``first .. stop-1``."""
        step = self._step
        j0, j1 = first // step, (stop - 1) // step + 2  # frames needed: j0 .. j1-1
        have = self._frame0 + len(self._frames)
        if j1 > have:
            self._frames = np.concatenate([self._frames, self._compute_frames(have, j1)])
        frames = self._frames[j0 - self._frame0:j1 - self._frame0].astype(np.float32)
        # whole frame intervals by broadcasting, then trim to the block
        weight = (np.arange(step, dtype=np.float32) / step)[None, :, None]
        out = frames[:-1, None] * (1 - weight) + frames[1:, None] * weight
        out = out.reshape(-1, frames.shape[1])[first - j0 * step:stop - j0 * step]
        keep = stop // step  # the next block starts interpolating from this frame
        self._frames = self._frames[keep - self._frame0:]
        self._frame0 = keep
        return out

    # -- 3. samples ------------------------------------------------------------------------
    def _init_signal(self) -> None:
        u, sess, cfg = self.user, self.session, self.config
        c, rate = cfg.n_channels, cfg.sample_rate
        # volume conductor: distance in the cross-section between muscle and electrode
        radius = cfg.forearm_radius_cm
        electrode_angle = 2 * np.pi * (np.arange(c) + sess.rotation) / c
        source_radius = radius - u.fat_cm - u.muscle_depths
        dist2 = (radius ** 2 + source_radius[None] ** 2 - 2 * radius * source_radius[None]
                 * np.cos(electrode_angle[:, None] - u.muscle_angles[None]))
        mixing = (1.0 / np.sqrt(dist2)) ** 3 * (u.amplitude_uv * sess.channel_gain[:, None])
        self._mixing = mixing.astype(np.float32)  # (channels, muscles)
        # each muscle's carrier spectrum: sEMG shape, shifted per user, tissue low-pass
        nyquist = rate / 2
        freqs = np.linspace(0.0, nyquist, 257)
        low, high = (f * u.spectral_scale for f in _SPECTRUM_HZ)
        intrinsic = freqs ** 4 / (freqs ** 2 + low ** 2) ** 2 / (1 + (freqs / high) ** 2) ** 2
        firs = []
        for depth in u.muscle_depths:
            tissue = 1.0 / (1.0 + (freqs / (_TISSUE_HZ / (1.0 + u.fat_cm + depth))) ** 2)
            gain = np.sqrt(intrinsic * tissue)
            h = signal.firwin2(_FIR_TAPS, freqs, gain / gain.max(), fs=rate)
            firs.append(h / np.sqrt(np.sum(h ** 2)))
        self._firs = np.stack(firs, axis=1).astype(np.float32)  # (taps, muscles)
        self._carrier_tail = self._carrier_rng.standard_normal((_FIR_TAPS - 1, N_MUSCLES),
                                                             dtype=np.float32)
        self._mains_hz = cfg.mains_hz * np.arange(1, 4)
        self._mains_phase = self._noise_rng.uniform(0, 2 * np.pi, 3)
        self._mains_mix = sess.mains_harmonics[:, None] * sess.mains_uv[None, :]  # (3, C)
        self._mains_hz = np.where(self._mains_hz < nyquist, self._mains_hz, 0.0)

    def _emg(self, index: np.ndarray, activation: np.ndarray, wander: np.ndarray) -> np.ndarray:
        n, rate, sess = len(index), self.sample_rate, self.session
        white = np.concatenate([self._carrier_tail, self._carrier_rng.standard_normal(
            (n, N_MUSCLES), dtype=np.float32)])
        self._carrier_tail = white[-(_FIR_TAPS - 1):]
        carriers = signal.oaconvolve(white, self._firs, mode="valid", axes=0)
        emg = _mix(activation * carriers, self._mixing)
        noise = self._noise_rng.standard_normal((n, self.n_channels), dtype=np.float32)
        noise *= self.user.noise_uv
        seconds = index / rate
        mains = np.sin(2 * np.pi * seconds[:, None] * self._mains_hz + self._mains_phase)
        emg += noise + _mix(mains, self._mains_mix.T).astype(np.float32) + wander
        self._add_spikes(emg, index[0], index[-1] + 1)
        if sess.dead_channel >= 0:
            emg[:, sess.dead_channel] = 0.3 * noise[:, sess.dead_channel]
        if sess.saturated_channel >= 0:
            rail = self.config.rail_uv
            ch = sess.saturated_channel
            emg[:, ch] = np.clip(emg[:, ch] * 20 + 2 * rail, -rail, rail)  # pinned at the rail
        return emg

    def _add_spikes(self, emg: np.ndarray, first: int, stop: int) -> None:
        for start, tau, amps in self._spikes:
            end = start + int(8 * tau)
            if end <= first or start >= stop:
                continue
            lo, hi = max(start, first), min(end, stop)
            k = np.arange(lo, hi) - start
            shape = np.exp(-k / tau) * (1 - np.exp(-k / (0.05 * tau)))
            emg[lo - first:hi - first] += shape[:, None] * amps[None]
        self._spikes = [sp for sp in self._spikes if sp[0] + int(8 * sp[1]) > stop]


def _mix(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``x (n, k) @ weights.T (k, m)`` without BLAS: these products are thin, and a
    multi-threaded BLAS waking its threads for them costs more than the arithmetic and
    competes with the live pipeline's threads when ``sim://`` feeds it."""
    return np.einsum("nk,mk->nm", x, weights)
