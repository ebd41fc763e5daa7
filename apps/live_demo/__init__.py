"""The live demo window (PyQt6 + pyqtgraph), a consumer of :mod:`emgstream`'s public API.

>>> from apps.live_demo import run_demo_window
>>> run_demo_window("sim://?session=2", "models/default.emgm")  # doctest: +SKIP

or ``emgstream demo`` / ``python -m apps.live_demo``.
"""

from __future__ import annotations

from ._app import run_demo_window
from .window import LiveDemoWindow

__all__ = ["LiveDemoWindow", "run_demo_window"]
