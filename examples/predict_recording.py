"""Recognise the gestures of a recording with a model file, through the live pipeline.

    python examples/predict_recording.py REC.h5 [--model FILE.emgm]

The recording is replayed as fast as it is read (``replay://...?speed=0``), every hop of the
model gives a prediction, and when the file has labels the share of hops predicted right.
"""

import argparse

import numpy as np

from emgstream.io import RecordingError, read_recording
from emgstream.modelfile import load_model_file
from emgstream.pipeline import Pipeline, PipelineConfig, default_model_path
from emgstream.sources import open_source

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("recording")
parser.add_argument("--model", default=None, help="model file (default: the shipped one)")
args = parser.parse_args()

model = load_model_file(args.model or default_model_path())
try:
    recording = read_recording(args.recording)
except RecordingError as err:
    parser.error(str(err))  # one line and exit status 2, as any bad argument
print(f"{recording!r}\nmodel classes: {', '.join(model.class_names)}")

source = open_source(f"replay://{args.recording}?speed=0")
events = []
# emit="hop": one event per hop, not only when the gesture changes
with Pipeline(source, model, PipelineConfig(emit="hop", threshold=0.0)) as pipeline:
    pipeline.subscribe(events.append)
    while pipeline.is_running:
        pipeline.wait(0.2)
# None until the debounce has agreed on a first gesture
predicted = [event.gesture or "uncertain" for event in events]
names, counts = np.unique(predicted, return_counts=True)
print(f"{len(events)} hops: " + ", ".join(f"{n} {c}" for n, c in zip(names, counts)))
if recording.labels is not None:
    truth = [recording.class_names[recording.labels[event.sample_index]] for event in events]
    right = np.mean([p == t for p, t in zip(predicted, truth)])
    print(f"agreement with the recording's labels: {right:.2f}")
