"""Personalize a model to one user without labels (EMG-UP) and save the result.

    python examples/personalize.py REC.h5 -o mine.emgm [--model FILE.emgm] [--epochs 2]

Needs torch (pip install 'emgstream[adapt]'). The user's unlabelled recording is filtered
exactly as the live path filters, cut into the model's windows, and the model adapted.
"""

import argparse

import numpy as np

from emgstream.adapt import AdaptConfig, adapt
from emgstream.dsp import filter_offline
from emgstream.io import RecordingError, read_recording
from emgstream.modelfile import load_model_file, save_model_file
from emgstream.nn import load_model
from emgstream.pipeline import default_model_path
from emgstream.train import to_model_file

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("recording")
parser.add_argument("-o", "--output", required=True)
parser.add_argument("--model", default=None, help="model file (default: the shipped one)")
parser.add_argument("--epochs", type=int, default=5, help="epochs of each of the two stages")
args = parser.parse_args()

model_file = load_model_file(args.model or default_model_path())
prep = model_file.preprocessing
try:
    recording = read_recording(args.recording)
except RecordingError as err:
    parser.error(str(err))  # one line and exit status 2, as any bad argument
model_file.check_stream(recording.n_channels, recording.sample_rate)  # says what differs
filtered = filter_offline(recording.emg, recording.sample_rate, prep)
ends = np.arange(prep.window, len(filtered) + 1, prep.hop)
windows = np.stack([filtered[end - prep.window:end].T for end in ends])  # (n, channels, time)
print(f"{len(windows)} windows of {prep.window} samples from {recording.duration:.1f} s")

config = AdaptConfig(ssa_epochs=args.epochs, ssp_epochs=args.epochs)
adapted, report = adapt(load_model(model_file), windows, method="emg-up", config=config)
print(f"{report.steps} steps; pseudo-labels kept for {report.accepted:.0%} of windows; "
      f"agreement with the source model {report.agreement:.0%}")
personal = to_model_file(adapted, prep, model_file.class_names, bank=model_file.bank,
                         provenance={**model_file.provenance, "personalized": True})
print(f"saved {save_model_file(args.output, personal)}")
