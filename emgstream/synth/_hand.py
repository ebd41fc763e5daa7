"""The hand: emg2pose joint order, the wrist degrees of freedom, and the gesture library.

Angles are radians, flexion (and abduction away from the middle finger, radial deviation,
pronation) positive. The generator works on 23 degrees of freedom: the 20 emg2pose joints,
then wrist flexion/extension, wrist radial/ulnar deviation and forearm pronation/supination;
only the first 20 are written as ``joint_angles``.
"""

from __future__ import annotations

import numpy as np

JOINT_NAMES = (
    "THUMB_CMC_FE", "THUMB_CMC_AA", "THUMB_MCP_FE", "THUMB_IP_FE",
    *(f"{finger}_{joint}" for finger in ("INDEX", "MIDDLE", "RING", "PINKY")
      for joint in ("MCP_AA", "MCP_FE", "PIP_FE", "DIP_FE")),
)
WRIST_DOFS = ("WRIST_FE", "WRIST_DEV", "PRONATION")
DOF_NAMES = JOINT_NAMES + WRIST_DOFS
N_JOINTS = len(JOINT_NAMES)  # 20
N_DOFS = len(DOF_NAMES)  # 23

FINGERS = ("index", "middle", "ring", "pinky")


def _dof(name: str) -> int:
    return DOF_NAMES.index(name)


def _pose(thumb=(0.2, 0.3, 0.2, 0.2), fingers=None, wrist=(0.0, 0.0, 0.0), spread=None):
    """Build a 23-DOF pose. ``fingers``: one (MCP_FE, PIP_FE, DIP_FE) for all or a dict
    finger -> triple; ``spread``: MCP_AA per finger."""
    q = np.zeros(N_DOFS)
    q[0:4] = thumb
    fingers = fingers if isinstance(fingers, dict) else {f: fingers for f in FINGERS}
    for i, finger in enumerate(FINGERS):
        base = 4 + 4 * i
        q[base] = 0.0 if spread is None else spread[i]
        q[base + 1:base + 4] = fingers.get(finger) or _RELAXED
    q[20:23] = wrist
    return q


_RELAXED = (0.35, 0.45, 0.25)
_CURLED = (1.45, 1.6, 1.0)
_STRAIGHT = (0.0, 0.05, 0.05)
_THUMB_OVER = (0.55, 0.15, 0.7, 0.6)


def _pinch(finger: int):
    fingers = {f: (0.25, 0.35, 0.2) for f in FINGERS}
    fingers[FINGERS[finger]] = (0.85 + 0.1 * finger, 0.9, 0.45)
    # opposition reaches further across the palm for the ulnar fingers
    return _pose(thumb=(0.6 + 0.2 * finger, 0.55 + 0.1 * finger, 0.35, 0.3), fingers=fingers)


# name -> (23-DOF target pose, grip force per muscle group beyond what the pose explains)
_LIBRARY = {
    "rest": (_pose(), {}),
    "fist": (_pose(thumb=(0.6, 0.2, 0.7, 0.6), fingers=_CURLED),
             {"FDS": 0.35, "FDP": 0.4, "FPL": 0.3, "ECRB": 0.15, "ECU": 0.1}),
    "open_hand": (_pose(thumb=(-0.15, 0.75, -0.05, 0.0), fingers=(-0.25, 0.0, 0.05),
                        spread=(-0.2, 0.0, 0.15, 0.3)), {"EDC": 0.15, "APL": 0.1}),
    "pinch_index": (_pinch(0), {"FDP_index": 0.3, "FDS_index": 0.15, "FPL": 0.25}),
    "pinch_middle": (_pinch(1), {"FDP_middle": 0.3, "FDS_middle": 0.15, "FPL": 0.25}),
    "pinch_ring": (_pinch(2), {"FDP_ring": 0.3, "FDS_ring": 0.15, "FPL": 0.25}),
    "pinch_pinky": (_pinch(3), {"FDP_pinky": 0.3, "FDS_pinky": 0.15, "FPL": 0.25}),
    "point": (_pose(thumb=_THUMB_OVER, fingers={"index": _STRAIGHT, "middle": _CURLED,
                                                "ring": _CURLED, "pinky": _CURLED}),
              {"EIP": 0.2, "FDS_middle": 0.1, "FDS_ring": 0.1, "FDS_pinky": 0.1}),
    "thumbs_up": (_pose(thumb=(-0.1, 0.6, -0.15, -0.1), fingers=_CURLED),
                  {"EPL": 0.25, "FDP": 0.15}),
    "wrist_flexion": (_pose(wrist=(1.0, 0.0, 0.0)), {"FCR": 0.1, "FCU": 0.1}),
    "wrist_extension": (_pose(fingers=(0.15, 0.3, 0.2), wrist=(-0.9, 0.0, 0.0)),
                        {"ECRL": 0.1, "ECU": 0.1}),
    "radial_deviation": (_pose(wrist=(0.0, 0.35, 0.0)), {"ECRL": 0.15, "FCR": 0.1, "APL": 0.1}),
    "ulnar_deviation": (_pose(wrist=(0.0, -0.5, 0.0)), {"ECU": 0.15, "FCU": 0.15}),
    # unseen: never in a training split (CPEP / EMBridge zero-shot protocol)
    "hook": (_pose(fingers=(0.05, 1.5, 1.05)), {"FDS": 0.2, "FDP": 0.25}),
    "rock": (_pose(thumb=_THUMB_OVER, fingers={"index": _STRAIGHT, "middle": _CURLED,
                                               "ring": _CURLED, "pinky": _STRAIGHT}),
             {"EIP": 0.15, "EDM": 0.15}),
    "call_me": (_pose(thumb=(-0.1, 0.7, -0.1, -0.05),
                      fingers={"index": _CURLED, "middle": _CURLED, "ring": _CURLED,
                               "pinky": _STRAIGHT}, spread=(0.0, 0.0, 0.0, 0.35)),
                {"EDM": 0.2, "EPL": 0.15}),
    "tripod": (_pose(thumb=(0.75, 0.6, 0.35, 0.3),
                     fingers={"index": (0.9, 0.85, 0.4), "middle": (0.95, 0.9, 0.45),
                              "ring": (0.3, 0.4, 0.25), "pinky": (0.3, 0.4, 0.25)}),
               {"FDP_index": 0.2, "FDP_middle": 0.2, "FPL": 0.25}),
    "pronation": (_pose(wrist=(0.0, 0.0, 1.0)), {"PT": 0.2}),
}

#: Gestures of the training vocabulary (``rest`` is class 0).
GESTURES = ("rest", "fist", "open_hand", "pinch_index", "pinch_middle", "pinch_ring",
            "pinch_pinky", "point", "thumbs_up", "wrist_flexion", "wrist_extension",
            "radial_deviation", "ulnar_deviation")
#: Gestures kept out of every training split, for zero-shot evaluation.
UNSEEN_GESTURES = ("hook", "rock", "call_me", "tripod", "pronation")
#: All classes; label ``i`` in every synthetic file means ``CLASS_NAMES[i]``.
CLASS_NAMES = GESTURES + UNSEEN_GESTURES

TARGET_POSES = np.stack([_LIBRARY[name][0] for name in CLASS_NAMES])  # (classes, 23)
REST_POSE = TARGET_POSES[0]
GRIP_FORCES = {name: _LIBRARY[name][1] for name in CLASS_NAMES}
