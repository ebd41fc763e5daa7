"""ONNX Runtime sessions for the inference thread (no torch here)."""

from __future__ import annotations

import numpy as np

from ..modelfile import ModelFile, ModelFileError, check_onnx_graph

__all__: list[str] = []


class _Runner:
    """One loaded graph: ``runner(windows (batch, channels, window) float32) -> logits``.

    Sessions run single-threaded (intra-op 1): the live path evaluates small batches, and on
    a few cores a thread pool would compete with acquisition and adaptation for nothing.
    """

    def __init__(self, onnx_bytes: bytes, model: ModelFile) -> None:
        import onnxruntime as ort

        # here as well as in load_model_file: swap_model takes bare ONNX bytes and ModelFile
        # objects built in memory, and nothing may reach a session unchecked
        check_onnx_graph(onnx_bytes, "the model's ONNX graph")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(bytes(onnx_bytes), sess_options=opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ModelFileError(f"the model's ONNX graph cannot be loaded: {err}") from err
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if model.input_name not in inputs:
            raise ModelFileError(f"the ONNX graph has inputs {inputs}, the model file declares "
                                 f"{model.input_name!r}")
        self._input = model.input_name
        self._output = model.output_names[0]
        if self._output not in outputs:
            raise ModelFileError(f"the ONNX graph has outputs {outputs}, the model file "
                                 f"declares logits {self._output!r}")
        p = model.preprocessing
        # dry runs check the shapes now and pay the first-run costs outside the stream
        for batch in (2, 1):
            probe = np.zeros((batch, p.n_channels, p.window), dtype=np.float32)
            try:
                logits = self(probe)
            except Exception as err:
                raise ModelFileError(f"the ONNX graph fails on input ({batch}, {p.n_channels}, "
                                     f"{p.window}): {err}") from err
            if logits.shape != (batch, model.n_classes):
                raise ModelFileError(f"the ONNX graph returns logits of shape {logits.shape} "
                                     f"for a batch of {batch}; expected "
                                     f"({batch}, {model.n_classes})")

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        return self._session.run([self._output], {self._input: windows})[0]


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (batch, classes) logits, in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z
