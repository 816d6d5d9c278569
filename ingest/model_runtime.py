"""Loading the detection models for a worker: ONNX Runtime sessions over the verified files of
`lookout models build`. The only place that touches the model files at run time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from detectors.yolo import Run


def onnx_runner(path: Path, threads: int = 1) -> Run:
    """`run(tensor) -> output` over one ONNX Runtime CPU session.

    One intra-op thread by default: a worker's parallelism is its many cameras and processes,
    and extra threads per session only contend for the same cores."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(tensor: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: tensor})[0])

    return run
