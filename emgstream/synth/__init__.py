"""Synthetic wristband users with paired EMG and hand pose.

>>> from emgstream.synth import make_users, generate_session
>>> users = make_users(4, seed=0)
>>> stream = generate_session(users[0], session=0, duration_s=60)   # LabelledStream with pose

:class:`SynthStream` produces the same signals block by block for ``sim://``.
"""

from __future__ import annotations

from ._dataset import generate_session, user_name, write_dataset
from ._hand import CLASS_NAMES, GESTURES, JOINT_NAMES, UNSEEN_GESTURES
from ._stream import SynthStream
from ._users import SessionProfile, SynthConfig, UserProfile, make_session, make_user, make_users

__all__ = ["CLASS_NAMES", "GESTURES", "JOINT_NAMES", "UNSEEN_GESTURES", "SessionProfile",
           "SynthConfig", "SynthStream", "UserProfile", "make_session", "make_user",
           "make_users", "generate_session", "user_name", "write_dataset"]
