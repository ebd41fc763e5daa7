"""Read a stream and filter it as it arrives: the causal band-pass + notch of the live path.

    python examples/read_and_filter.py                       # the simulated wristband
    python examples/read_and_filter.py lsl://name=MyBand --seconds 10
"""

import argparse

import numpy as np

from emgstream.dsp import StreamingFilter, design_filters
from emgstream.sources import open_source

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("source", nargs="?", default="sim://?channels=16&rate=2000")
parser.add_argument("--seconds", type=float, default=3.0)
args = parser.parse_args()

with open_source(args.source) as source:
    info = source.info
    print(f"{info.name}: {info.n_channels} channels at {info.sample_rate:g} Hz ({info.units})")
    # 20-450 Hz (clamped below Nyquist for slower bands) and a 50 Hz notch; the filter
    # carries its state from chunk to chunk, so chunks of any size give the same output
    stream_filter = StreamingFilter(design_filters(info.sample_rate), info.n_channels)
    wanted, parts = int(args.seconds * info.sample_rate), []
    while sum(len(p) for p in parts) < wanted:
        samples, timestamps = source.read(timeout=1.0)
        if len(samples):
            parts.append(stream_filter.process(samples))
filtered = np.concatenate(parts)[:wanted]
rms = np.sqrt(np.mean(np.square(filtered, dtype=np.float64), axis=0))
print(f"filtered {len(filtered)} samples; RMS per channel ({info.units}):")
print(" ".join(f"{name}={value:.1f}" for name, value in zip(info.channel_names, rms)))
