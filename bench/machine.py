"""What a benchmark ran on, recorded beside its figures: inference speed on a CPU depends on
the vector units far more than on the clock (int8 convolutions are about three times faster
with AVX-512 VNNI than without), so a figure without its machine cannot be compared."""

from __future__ import annotations

import os
import platform
from pathlib import Path

VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def describe() -> dict[str, object]:
    """CPU model, logical CPUs, the vector extensions that matter for inference, library versions."""
    model, flags = platform.processor() or platform.machine(), set[str]()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    import onnxruntime

    return {"cpu": model, "logical_cpus": os.cpu_count(), "vector": [f for f in VECTOR_FLAGS if f in flags],
            "onnxruntime": onnxruntime.__version__}
