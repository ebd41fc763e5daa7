"""Per-window inference latency on one CPU thread: ONNX Runtime against torch eager.

    python benchmarks/bench_export.py [--model models/default.emgm] [--repeats 200]

Prints a markdown table: median microseconds per call and per window for batch 1 and 64,
and the ratio torch / ONNX Runtime measured in the same run (> 1: ONNX Runtime is faster).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _common import median_seconds

ROOT = Path(__file__).resolve().parents[1]


def _median_us(fn, repeats: int) -> float:
    return 1e6 * median_seconds(fn, repeats, warmup=max(3, repeats // 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "default.emgm")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()

    import onnxruntime as ort
    import torch

    from emgstream.modelfile import load_model_file
    from emgstream.nn import load_model

    torch.set_num_threads(1)
    mf = load_model_file(args.model)
    model = load_model(mf)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    sess = ort.InferenceSession(mf.onnx, options, providers=["CPUExecutionProvider"])
    p = mf.preprocessing
    rng = np.random.default_rng(0)
    print(f"model: {args.model.name} ({p.n_channels} ch x {p.window} samples, "
          f"{mf.architecture['encoder']['d_model']}-d, {mf.architecture['encoder']['n_layers']} "
          f"layers); one CPU thread; median of {args.repeats} calls\n")
    print("| batch | ONNX Runtime µs/call | torch eager µs/call | ONNX Runtime µs/window "
          "| torch µs/window | torch / ORT |")
    print("|---:|---:|---:|---:|---:|---:|")
    for batch in (1, 64):
        x = (rng.standard_normal((batch, p.n_channels, p.window)) * 50).astype(np.float32)
        xt = torch.from_numpy(x)
        t_ort = _median_us(lambda: sess.run(None, {"emg": x}), args.repeats)
        with torch.inference_mode():
            t_torch = _median_us(lambda: model(xt), args.repeats)
        print(f"| {batch} | {t_ort:.0f} | {t_torch:.0f} | {t_ort / batch:.1f} | "
              f"{t_torch / batch:.1f} | {t_torch / t_ort:.2f} |")


if __name__ == "__main__":
    main()
