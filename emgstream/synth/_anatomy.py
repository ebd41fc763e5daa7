"""Forearm muscles as EMG sources: where they lie and which motions recruit them.

Each muscle has an angle around the forearm (0 = dorsal midline, increasing towards the
radius, pi = volar midline), a depth under the fascia in cm, and a row of moment-like
weights over the 23 degrees of freedom of :mod:`._hand`: its posture drive is
``relu(weights @ (pose - rest))`` and its motion drive ``relu(weights @ velocity)``. Each
muscle has an antagonist that co-contracts. The anatomy is simplified (one source per
finger compartment of FDS, FDP and EDC; no intrinsic hand muscles, whose EMG a forearm band
barely sees), but placement and synergies follow the forearm's cross-section.
"""

from __future__ import annotations

import numpy as np

from ._hand import DOF_NAMES, FINGERS, N_DOFS

_PI = np.pi


def _w(**weights: float) -> np.ndarray:
    row = np.zeros(N_DOFS)
    for name, value in weights.items():
        row[DOF_NAMES.index(name.upper())] = value
    return row


def _finger(finger: str, mcp: float, pip: float, dip: float, aa: float = 0.0, wrist=0.0):
    f = finger.upper()
    return _w(**{f"{f}_MCP_FE": mcp, f"{f}_PIP_FE": pip, f"{f}_DIP_FE": dip,
                 f"{f}_MCP_AA": aa, "WRIST_FE": wrist})


# (name, angle rad, depth cm, weights, antagonist)
_MUSCLES: list[tuple[str, float, float, np.ndarray, str]] = []
for _i, _f in enumerate(FINGERS):
    _spread = (_i - 1.5) * 0.14  # finger compartments lie side by side, index radial
    _MUSCLES.append((f"FDS_{_f}", _PI - 0.1 - _spread, 0.9,
                     _finger(_f, 0.6, 1.0, 0.1, wrist=0.2), f"EDC_{_f}"))
    _MUSCLES.append((f"FDP_{_f}", _PI + 0.35 - _spread, 1.7,
                     _finger(_f, 0.3, 0.5, 1.0, wrist=0.1), f"EDC_{_f}"))
    _MUSCLES.append((f"EDC_{_f}", 0.05 + _spread, 0.7,
                     _finger(_f, -1.0, -0.35, -0.2, wrist=-0.15), f"FDS_{_f}"))
_MUSCLES += [
    ("EIP", -0.15, 1.4, _finger("index", -0.9, -0.3, -0.1), "FDS_index"),
    ("EDM", -0.6, 0.8, _finger("pinky", -0.9, -0.3, -0.1, aa=0.3), "FDS_pinky"),
    ("FPL", _PI - 0.55, 1.6, _w(thumb_ip_fe=1.0, thumb_mcp_fe=0.5, thumb_cmc_fe=0.2), "EPL"),
    ("APL", 0.75, 1.1, _w(thumb_cmc_aa=0.9, thumb_cmc_fe=-0.3, wrist_dev=0.3), "FPL"),
    ("EPL", 0.45, 1.2, _w(thumb_ip_fe=-0.8, thumb_mcp_fe=-0.8, thumb_cmc_fe=-0.5), "FPL"),
    ("FCR", _PI - 0.85, 0.6, _w(wrist_fe=1.0, wrist_dev=0.5), "ECRL"),
    ("FCU", _PI + 0.9, 0.6, _w(wrist_fe=1.0, wrist_dev=-0.6), "ECU"),
    ("ECRL", 1.15, 0.6, _w(wrist_fe=-0.8, wrist_dev=0.7), "FCR"),
    ("ECRB", 0.85, 0.8, _w(wrist_fe=-1.0, wrist_dev=0.3), "FCR"),
    ("ECU", -1.0, 0.6, _w(wrist_fe=-0.7, wrist_dev=-0.8), "FCU"),
    ("PT", _PI - 1.3, 0.9, _w(pronation=1.0, wrist_fe=0.1), "SUP"),
    ("SUP", 1.0, 1.9, _w(pronation=-1.0), "PT"),
    ("BR", 1.5, 0.5, _w(pronation=0.2, wrist_dev=0.2), "SUP"),
]

MUSCLE_NAMES = tuple(m[0] for m in _MUSCLES)
N_MUSCLES = len(MUSCLE_NAMES)
MUSCLE_ANGLES = np.array([m[1] for m in _MUSCLES])
MUSCLE_DEPTHS = np.array([m[2] for m in _MUSCLES])
MUSCLE_WEIGHTS = np.stack([m[3] for m in _MUSCLES])  # (muscles, 23)
ANTAGONIST = np.array([MUSCLE_NAMES.index(m[4]) for m in _MUSCLES])


def muscle_vector(spec: dict[str, float]) -> np.ndarray:
    """Expand ``{"FDS": 0.3, "FPL": 0.2}`` (a group prefix or a muscle name) to (muscles,)."""
    out = np.zeros(N_MUSCLES)
    for key, value in spec.items():
        hit = [i for i, name in enumerate(MUSCLE_NAMES) if name == key or
               name.startswith(key + "_")]
        if not hit:
            raise KeyError(f"no muscle or muscle group named {key!r}")
        out[hit] += value
    return out
