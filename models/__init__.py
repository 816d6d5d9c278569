"""The detection models: their manifests and the one-time export to ONNX.

Each `*.json` manifest (read by `manifest`) says where a model's weights come from, by hash,
and what it outputs. `lookout models build` (`build`) exports each once to ONNX, float32 and
int8 (`export_onnx`, `quantize_onnx`, run in a separate export environment), into the model
cache; the workers load the verified files (`ingest.model_runtime`). Built files are cached
and never committed. Uses only `config`.
"""
