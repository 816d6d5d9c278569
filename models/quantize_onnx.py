"""Quantize one exported model to int8 (weights per channel, activations per tensor, QDQ).
Runs inside the export environment (onnx and ONNX Runtime's quantization tools live there),
never inside Lookout's own, so it imports nothing from Lookout.

    python models/quantize_onnx.py MANIFEST.json CACHE_DIR

Reads CACHE_DIR/<name>.onnx, writes CACHE_DIR/<name>.int8.onnx. Exit status 0 when written.

Why int8: on a CPU with VNNI (AVX-512 or AVX) an int8 convolution runs about three times
faster than float32, and inference is most of what a worker spends.

Calibration (the activation ranges) takes no image from the data the chain is measured on:
ultralytics' own `bus.jpg` and `zidane.jpg` (shipped inside its package), each at every 15° of
hue and three brightness gains, and on every other one one to three drawn flames (a teardrop of
fractal noise through a black-red-orange-yellow-white palette). Without the flames, fire
activations fall outside the calibrated ranges and flame scores drop by 0.08 on average on the
shared dataset's first 100 images; with them, by 0.013 (scores calibrated on the dataset itself:
0.001). bench/quality.py measures what int8 costs the whole chain.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

HUE_STEP, GAINS = 15, (0.6, 1.0, 1.4)
PAD_VALUE = 114
# BGR: black, red, orange, amber, yellow, white — a flame's colours from its edge to its core
FLAME_PALETTE = np.array([[0, 0, 0], [20, 20, 180], [0, 90, 255], [0, 180, 255], [120, 240, 255], [255, 255, 255]],
                         np.float32)


def fractal_noise(rng: np.random.Generator, height: int, width: int, octaves: int = 4) -> np.ndarray:
    """(height, width) float32 in about [0, 1]: random grids of 4, 8, 16… cells, smoothly enlarged."""
    out = np.zeros((height, width), np.float32)
    for octave in range(octaves):
        cells = rng.random((4 << octave, 4 << octave)).astype(np.float32)
        out += cv2.resize(cells, (width, height), interpolation=cv2.INTER_CUBIC) / 2 ** octave
    return out / 2


def drawn_flame(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A flame's BGR colours (height, width, 3) and opacity (height, width, 1): hot and wide at the
    base, narrowing to a tip, its edge broken by noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    up = 1 - y / height
    half_width = 0.5 * (1 - up) ** 0.7 + 0.02
    inside = 1 - np.abs(x / width - 0.5) / half_width
    heat = np.clip(inside * (1.2 - up) + 0.6 * (fractal_noise(rng, height, width) - 0.5), 0, 1)
    position = heat * (len(FLAME_PALETTE) - 1)
    index = np.minimum(position.astype(int), len(FLAME_PALETTE) - 2)
    blend = (position - index)[..., None]
    colour = FLAME_PALETTE[index] * (1 - blend) + FLAME_PALETTE[index + 1] * blend
    return colour, np.clip(heat * 3, 0, 1)[..., None]


def with_flames(rng: np.random.Generator, picture: np.ndarray) -> np.ndarray:
    """`picture` with one to three drawn flames of 15–60 % of its height."""
    out = picture.astype(np.float32)
    height, width = out.shape[:2]
    for _ in range(rng.integers(1, 4)):
        h = int(height * rng.uniform(0.15, 0.6))
        w = int(h * rng.uniform(0.5, 1.2))
        top, left = rng.integers(0, height - h), rng.integers(0, width - w)
        colour, alpha = drawn_flame(rng, h, w)
        region = out[top:top + h, left:left + w]
        out[top:top + h, left:left + w] = region * (1 - alpha) + colour * alpha
    return out.clip(0, 255).astype(np.uint8)


def calibration_pictures() -> Iterator[np.ndarray]:
    """BGR pictures: the two ultralytics samples at every hue step and gain, every other hue
    mirrored, every other picture with drawn flames (a fixed seed: the same set every build)."""
    rng = np.random.default_rng(0)
    count = 0
    assets = importlib.resources.files("ultralytics") / "assets"
    for name in ("bus.jpg", "zidane.jpg"):
        hsv = cv2.cvtColor(cv2.imread(str(assets / name)), cv2.COLOR_BGR2HSV).astype(np.float32)
        for shift in range(0, 180, HUE_STEP):
            for gain in GAINS:
                turned = hsv.copy()
                turned[..., 0] = (turned[..., 0] + shift) % 180
                turned[..., 1] = np.clip(turned[..., 1] * 1.5, 0, 255)
                turned[..., 2] = np.clip(turned[..., 2] * gain, 0, 255)
                picture = cv2.cvtColor(turned.astype(np.uint8), cv2.COLOR_HSV2BGR)
                picture = picture[:, ::-1] if (shift // HUE_STEP) % 2 else picture
                yield with_flames(rng, picture) if count % 2 else picture
                count += 1


def model_input(picture: np.ndarray, height: int, width: int) -> np.ndarray:
    """(1, 3, height, width) float32 RGB in [0, 1], letterboxed as Lookout's detector does."""
    h, w = picture.shape[:2]
    scale = min(height / h, width / w)
    new_h, new_w = round(h * scale), round(w * scale)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    canvas = np.full((height, width, 3), PAD_VALUE, np.uint8)
    canvas[top:top + new_h, left:left + new_w] = cv2.resize(picture, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return (cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None] / 255.0).astype(np.float32)


def float_head(graph: object) -> list[str]:
    """Names of the detection head's nodes that stay float32: those that decode its output (the
    nodes of the module that makes the graph's output, ultralytics' Detect, e.g. `/model.22/`,
    other than its convolution branches `cv2.*` for boxes and `cv3.*` for classes), and the last
    convolution of each branch. The output joins box coordinates (0–640) and class scores (0–1)
    in one tensor, and one int8 scale for both rounds every score to zero; and class logits
    quantized per tensor come in steps coarse enough to park many scores on exactly 0.5, a
    shipped threshold. Those last 1×1 convolutions are a sliver of the model's work."""
    output = graph.output[0].name  # type: ignore[attr-defined]
    last = next(node for node in graph.node if output in node.output)  # type: ignore[attr-defined]
    module = last.name.rsplit("/", 1)[0] + "/"
    head = [node.name for node in graph.node if node.name.startswith(module)]  # type: ignore[attr-defined]
    branches: dict[str, list[str]] = {}
    for name in head:
        if name.startswith((module + "cv2.", module + "cv3.")) and name.endswith("/Conv"):
            branches.setdefault(name[len(module):].split("/", 1)[0], []).append(name)
    decoding = [name for name in head if not name.startswith((module + "cv2.", module + "cv3."))]
    return decoding + [max(convs) for convs in branches.values()]


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def density_input(picture: np.ndarray, height: int, width: int) -> np.ndarray:
    """(1, 3, height, width) float32 as a CSRNet density model takes it: RGB, normalised with
    ImageNet's mean and deviation, stretched to the size (no letterbox: the map covers the frame)."""
    rgb = cv2.cvtColor(cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    return ((rgb.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None].copy()


def density_output(graph: object) -> list[str]:
    """The node that makes a density model's output stays float32: its map sums thousands of
    cells of a few hundredths each, and one int8 step per cell would be a person per frame.
    So quantized, CSRNet counts within 0.6 % of float32 on crowd-dev in 0.3 s instead of 1.0 s."""
    output = graph.output[0].name  # type: ignore[attr-defined]
    return [node.name for node in graph.node if output in node.output]  # type: ignore[attr-defined]


def main() -> int:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    manifest_path, cache = Path(sys.argv[1]), Path(sys.argv[2])
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    source, target = cache / f"{manifest['name']}.onnx", cache / f"{manifest['name']}.int8.onnx"
    height, width = manifest["input"]["height"], manifest["input"]["width"]

    density = manifest.get("format", "yolo") == "csrnet"
    prepare = density_input if density else model_input

    class Pictures(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self, input_name: str) -> None:
            self.feed = ({input_name: prepare(p, height, width)} for p in calibration_pictures())

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feed, None)

    import onnx

    input_name = onnx.load(str(source), load_external_data=False).graph.input[0].name
    with tempfile.TemporaryDirectory() as work:
        prepared = Path(work) / "prepared.onnx"
        # the export's shapes are dynamic: symbolic inference cannot finish, ONNX's own can
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        part = target.with_suffix(".onnx.part")
        graph = onnx.load(str(prepared)).graph
        head = density_output(graph) if density else float_head(graph)
        quantize_static(str(prepared), str(part), Pictures(input_name), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=head)
        os.replace(part, target)
    print(json.dumps({"name": manifest["name"], "int8": str(target)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
