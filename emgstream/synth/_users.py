"""Configuration and the per-user / per-session draws of the synthetic population."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._checks import check_positive_float, check_positive_int
from ._anatomy import MUSCLE_ANGLES, MUSCLE_DEPTHS, N_MUSCLES, muscle_vector
from ._hand import CLASS_NAMES, GRIP_FORCES, N_DOFS, TARGET_POSES

__all__ = ["SynthConfig", "UserProfile", "SessionProfile", "make_users", "make_user",
           "make_session"]

# independent random streams per purpose, so that one draw never shifts another
_USER_STREAM, _SESSION_STREAM = 1, 2


@dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator. Spreads are standard deviations unless named otherwise.

    The defaults were tuned with ``benchmarks/bench_realism.py`` until LDA on Hudgins
    features found the synthetic cross-user problem at least as hard as on the real 3DC
    people, with a similar within-user accuracy.

    Band and signal
        n_channels, sample_rate, emg_scale_uv (surface amplitude of a fully active muscle
        right under an electrode), forearm_radius_cm, control_rate (pose / activation rate
        before interpolation to the sample rate).
    Per-user variability (what makes cross-user recognition hard)
        rotation_max (band placement, uniform within +-this many electrode spacings),
        channel_gain_spread (log-normal electrode-skin gain), fat_cm (uniform range of the
        fat layer: spatial blur and low-pass), spectral_shift (log-normal spread of the
        muscle's spectral peak), pose_style (per-gesture pose offsets, rad),
        activation_style (log-normal per gesture per muscle), muscle_gain_spread
        (log-normal per muscle), anatomy_jitter (rad of muscle angle), cocontraction (uniform
        range), noise_uv (uniform range of electrode noise RMS), amplitude_spread (log-normal).
    Per session (re-donning)
        session_rotation (electrode spacings), session_gain_spread (log-normal per channel).
    Per repetition
        rep_pose_jitter (rad), rep_force_spread (log-normal), hold_s, rest_s, move_s
        (mean durations; each repetition draws within +-30 %), direct_transition (probability
        of going from one gesture to the next without resting).
    Artifacts
        mains_hz (the lab's mains frequency; harmonics follow), mains_uv (uniform range
        per session), baseline_uv, spike_rate_hz (random motion spikes),
        spike_at_onset (probability per movement onset), dead_channel_p,
        saturated_channel_p (per session), rail_uv.
    """

    n_channels: int = 16
    sample_rate: float = 2000.0
    emg_scale_uv: float = 600.0
    forearm_radius_cm: float = 4.0
    control_rate: float = 100.0

    rotation_max: float = 2.5
    channel_gain_spread: float = 0.4
    fat_cm: tuple[float, float] = (0.2, 0.9)
    spectral_shift: float = 0.25
    pose_style: float = 0.2
    activation_style: float = 0.9
    muscle_gain_spread: float = 0.35
    anatomy_jitter: float = 0.35
    cocontraction: tuple[float, float] = (0.05, 0.4)
    noise_uv: tuple[float, float] = (1.0, 6.0)
    amplitude_spread: float = 0.7

    session_rotation: float = 0.15
    session_gain_spread: float = 0.1

    rep_pose_jitter: float = 0.08
    rep_force_spread: float = 0.3
    hold_s: float = 2.0
    rest_s: float = 1.5
    move_s: float = 0.4
    direct_transition: float = 0.15

    mains_hz: float = 50.0
    mains_uv: tuple[float, float] = (2.0, 30.0)
    baseline_uv: float = 60.0
    spike_rate_hz: float = 0.03
    spike_at_onset: float = 0.1
    dead_channel_p: float = 0.05
    saturated_channel_p: float = 0.03
    rail_uv: float = 6000.0

    def __post_init__(self) -> None:
        check_positive_int(self.n_channels, "n_channels")
        check_positive_float(self.sample_rate, "sample_rate")
        check_positive_float(self.control_rate, "control_rate")
        for name in ("hold_s", "rest_s", "move_s", "emg_scale_uv", "forearm_radius_cm"):
            check_positive_float(getattr(self, name), name)
        for name in ("direct_transition", "spike_at_onset", "dead_channel_p",
                     "saturated_channel_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)!r}")


@dataclass
class UserProfile:
    """One synthetic person: anatomy, skin, habits. Arrays are over muscles, channels or
    classes of :data:`CLASS_NAMES` as named.

    Attributes
    ----------
    index, seed : int
        Which user of which population (``make_users(n, seed)[index]``).
    rotation : float
        Habitual band placement, in electrode spacings.
    channel_gain : ndarray (channels,)
    fat_cm, spectral_scale, cocontraction, noise_uv, amplitude_uv : float
    muscle_angles, muscle_depths, muscle_gain : ndarray (muscles,)
    pose_offsets : ndarray (classes, 23)
        The user's own way of holding each gesture.
    activation_style : ndarray (classes, muscles)
        The user's own recruitment of each muscle in each gesture.
    """

    index: int
    seed: int
    config: SynthConfig = field(repr=False)
    rotation: float
    channel_gain: np.ndarray = field(repr=False)
    fat_cm: float
    spectral_scale: float
    cocontraction: float
    noise_uv: float
    amplitude_uv: float
    muscle_angles: np.ndarray = field(repr=False)
    muscle_depths: np.ndarray = field(repr=False)
    muscle_gain: np.ndarray = field(repr=False)
    pose_offsets: np.ndarray = field(repr=False)
    activation_style: np.ndarray = field(repr=False)

    def __repr__(self) -> str:
        return (f"<UserProfile {self.index} (seed {self.seed}): rotation {self.rotation:+.2f} "
                f"el., fat {self.fat_cm:.2f} cm, spectrum x{self.spectral_scale:.2f}, "
                f"noise {self.noise_uv:.1f} uV>")


@dataclass
class SessionProfile:
    """One donning of the band by one user."""

    index: int
    rotation: float  #: total band rotation in electrode spacings (user + re-donning)
    channel_gain: np.ndarray  #: (channels,) user gain times this session's
    mains_uv: np.ndarray  #: (channels,) coupling of mains per channel
    mains_harmonics: np.ndarray  #: (3,) relative amplitude of f, 2f, 3f
    dead_channel: int  #: -1 when none
    saturated_channel: int  #: -1 when none


def _lognormal(rng: np.random.Generator, spread: float, size=None) -> np.ndarray:
    return np.exp(rng.normal(0.0, spread, size))


def make_users(n: int, seed: int = 0, config: SynthConfig | None = None) -> list[UserProfile]:
    """Draw ``n`` users. User ``i`` is the same whatever ``n`` (seeded by ``(seed, i)``)."""
    check_positive_int(n, "n")
    return [make_user(i, seed, config) for i in range(n)]


def make_user(index: int, seed: int = 0, config: SynthConfig | None = None) -> UserProfile:
    """Draw user ``index`` of the population ``seed``."""
    config = config or SynthConfig()
    if index < 0 or seed < 0:
        raise ValueError(f"user index and seed must be non-negative, got {index}, {seed}")
    rng = np.random.default_rng([seed, index, _USER_STREAM])
    n_classes = len(CLASS_NAMES)
    pose_offsets = rng.normal(0.0, config.pose_style, (n_classes, N_DOFS))
    pose_offsets[:, 20:] *= 0.5  # the wrist varies less between people than fingers do
    # a user's style only moves the joints a gesture uses, plus a little everywhere
    moving = np.abs(TARGET_POSES - TARGET_POSES[0]) > 0.05
    pose_offsets *= np.where(moving, 1.0, 0.3)
    return UserProfile(
        index=index, seed=seed, config=config,
        rotation=float(rng.uniform(-config.rotation_max, config.rotation_max)),
        channel_gain=_lognormal(rng, config.channel_gain_spread, config.n_channels),
        fat_cm=float(rng.uniform(*config.fat_cm)),
        spectral_scale=float(_lognormal(rng, config.spectral_shift)),
        cocontraction=float(rng.uniform(*config.cocontraction)),
        noise_uv=float(rng.uniform(*config.noise_uv)),
        amplitude_uv=float(config.emg_scale_uv * _lognormal(rng, config.amplitude_spread)),
        muscle_angles=MUSCLE_ANGLES + rng.normal(0.0, config.anatomy_jitter, N_MUSCLES),
        muscle_depths=MUSCLE_DEPTHS * _lognormal(rng, 0.15, N_MUSCLES),
        muscle_gain=_lognormal(rng, config.muscle_gain_spread, N_MUSCLES),
        pose_offsets=pose_offsets,
        # clipped at 1.5 sd: a gesture nobody could tell from rest is not a gesture
        activation_style=np.exp(config.activation_style * np.clip(
            rng.normal(0.0, 1.0, (n_classes, N_MUSCLES)), -1.5, 1.5)),
    )


def make_session(user: UserProfile, session: int) -> SessionProfile:
    """Draw the ``session``-th donning of the band by ``user``."""
    if session < 0:
        raise ValueError(f"session must be non-negative, got {session}")
    config = user.config
    rng = np.random.default_rng([user.seed, user.index, _SESSION_STREAM, session])
    c = config.n_channels
    dead = int(rng.integers(c)) if rng.random() < config.dead_channel_p else -1
    saturated = int(rng.integers(c)) if rng.random() < config.saturated_channel_p else -1
    return SessionProfile(
        index=session,
        rotation=user.rotation + float(rng.normal(0.0, config.session_rotation)),
        channel_gain=user.channel_gain * _lognormal(rng, config.session_gain_spread, c),
        mains_uv=rng.uniform(*config.mains_uv) * rng.uniform(0.3, 1.0, c),
        mains_harmonics=np.array([1.0, rng.uniform(0.0, 0.2), rng.uniform(0.0, 0.15)]),
        dead_channel=dead,
        saturated_channel=saturated if saturated != dead else -1,
    )


def grip_force(name: str) -> np.ndarray:
    """(muscles,) grip force of gesture ``name`` beyond its pose."""
    return muscle_vector(GRIP_FORCES[name])
