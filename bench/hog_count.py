"""OpenCV's HOG people detector, the baseline of bench/crowd.py. OpenCV 5 (Lookout's) moved
HOG out of the main package, so this runs in a small environment of its own with OpenCV 4
(bench/crowd.py makes it) and imports nothing from Lookout.

    python hog_count.py PICTURES.npz

PICTURES.npz holds RGB pictures as arrays `0`, `1`, ... Prints one JSON line: the people
counted in each picture (OpenCV's default decision: SVM score above 0, grouped), and the
milliseconds each took on one thread.
"""

from __future__ import annotations

import json
import sys
import time

import cv2
import numpy as np


def main() -> int:
    cv2.setNumThreads(1)
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    stored = np.load(sys.argv[1])
    counts, ms = [], []
    for key in sorted(stored.files, key=int):
        gray = cv2.cvtColor(stored[key], cv2.COLOR_RGB2GRAY)
        started = time.perf_counter()
        boxes, _ = hog.detectMultiScale(gray, winStride=(8, 8), padding=(8, 8), scale=1.05)
        ms.append(1000 * (time.perf_counter() - started))
        counts.append(len(boxes))
    print(json.dumps({"counts": counts, "ms": ms}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
