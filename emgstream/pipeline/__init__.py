"""The live pipeline: acquisition, inference and optional adaptation threads.

>>> from emgstream.pipeline import Pipeline, PipelineConfig, default_model_path
>>> from emgstream.sources import open_source
>>> from emgstream.modelfile import load_model_file
>>> with Pipeline(open_source("sim://"), load_model_file(default_model_path()),
...               PipelineConfig(threshold=0.6)) as pipeline:      # doctest: +SKIP
...     pipeline.subscribe(print)
...     pipeline.wait(10.0)

- :class:`Pipeline`: start/stop, ``subscribe``, ``snapshot``, adaptation, recording.
- :class:`PipelineProcess`: the same controls on a pipeline in a child process (for a
  viewer that paints: its GIL is not the pipeline's).
- :class:`PipelineConfig`: smoothing, threshold, debounce, buffers, adaptation switch.
- :class:`GestureEvent`: what subscribers receive; :class:`Snapshot`, :class:`PipelineStats`.
- :class:`Decider`: the per-hop smoothing and debounce that turns probabilities into events
  (the benchmarks replay it offline).
- :class:`JsonLinesWriter`, :class:`LSLMarkerOutlet`: ready-made subscribers.
- :func:`default_model_path`: the shipped model file, if present.
- :func:`personal_model_path`: where a user's personalization of a model file is kept,
  under :func:`users_folder`.

Without adaptation this package imports onnxruntime but never torch.
"""

from __future__ import annotations

from pathlib import Path

from ._adaptation import AdaptationError
from ._config import PipelineConfig
from ._decision import Decider, GestureEvent
from ._outputs import JsonLinesWriter, LSLMarkerOutlet
from ._personal import personal_model_path, users_folder
from ._pipeline import Pipeline, PipelineStats, Snapshot
from ._remote import PipelineProcess, PipelineProcessError

__all__ = ["AdaptationError", "Decider", "GestureEvent", "JsonLinesWriter", "LSLMarkerOutlet",
           "Pipeline", "PipelineConfig", "PipelineProcess", "PipelineProcessError", "PipelineStats",
           "Snapshot", "default_model_path", "personal_model_path",
           "users_folder"]

_DEFAULT_MODEL = Path("models") / "default.emgm"


def default_model_path() -> Path | None:
    """The shipped default model file (``models/default.emgm`` beside the package), or None.

    Looked up next to the installed package first (wheel installs carry it as package data
    under ``emgstream/models``; in a checkout that is a link to ``models/``), then in the
    source checkout that holds the package. Returned resolved: one file, one path.
    """
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / _DEFAULT_MODEL, package.parent / _DEFAULT_MODEL):
        if candidate.is_file():
            return candidate.resolve()
    return None
