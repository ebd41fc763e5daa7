"""emgstream: a real-time pipeline for wearable surface EMG.

Subpackages (each keeps a small public surface; see ``docs/ARCHITECTURE.md``):

- :mod:`emgstream.sources`  acquisition: LSL, serial, replay, simulator, by URI
- :mod:`emgstream.dsp`      numba ring buffer and streaming filters
- :mod:`emgstream.io`       recordings (emg2pose-layout HDF5) and dataset loaders
- :mod:`emgstream.synth`    synthetic users with paired EMG and hand pose
- :mod:`emgstream.nn`       torch models (MAE, CPEP, EMBridge, heads)
- :mod:`emgstream.train`    offline training recipes, DDP, export
- :mod:`emgstream.adapt`    EMG-UP unsupervised personalization
- :mod:`emgstream.pipeline` the live acquisition / inference / adaptation threads
"""

import logging

__version__ = "0.1.0"

logger = logging.getLogger("emgstream")
logger.addHandler(logging.NullHandler())

__all__ = ["__version__", "logger"]
