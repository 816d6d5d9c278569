"""Export one manifest's weights to ONNX. Runs inside the export environment (torch,
ultralytics and the source package; see models/export-requirements.txt), never inside Lookout's
own, so it imports nothing from Lookout: it reads the manifest JSON itself.

    python models/export_onnx.py MANIFEST.json OUT_DIR

Exit status 0 with OUT_DIR/<name>.onnx written; 3 when the weights in the installed package do
not match the manifest's sha256; 4 when the model's classes differ from the manifest's.
"""

from __future__ import annotations

import hashlib
import importlib
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


def main() -> int:
    manifest_path, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    source = manifest["source"]
    weights = Path(str(importlib.resources.files(source["module"]).joinpath(source["file"])))
    found = sha256(weights)
    if found != source["sha256"]:
        print(f"{source['package']} {source['version']}: {source['file']} has sha256 {found}, "
              f"the manifest says {source['sha256']}", file=sys.stderr)
        return 3
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
