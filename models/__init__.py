"""Model manifests and their one-time ONNX export (lands with the detection core)."""
