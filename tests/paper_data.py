"""paper_data.py - the data of the paper-size fixtures (numpy only).

Fashion-MNIST's 28x28 images padded with 2 zero pixels on every side to
32x32 and repeated over 3 channels, as uint8; the models see pixel/255
normalised with the shared models' mean 0.2860 and std 0.3530 on every
channel (nepenc: `--mean 0.2860 --std 0.3530`).
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
from nptest import load_idx  # noqa: E402  (the one IDX reader)

MEAN, STD = 0.2860, 0.3530
FMNIST = os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")


def load_u8(split="train", limit=0):
    """(images uint8 [N,3,32,32], labels int64 [N])."""
    p = "train" if split == "train" else "t10k"
    x = load_idx(os.path.join(FMNIST, f"{p}-images-idx3-ubyte.gz"))
    y = load_idx(os.path.join(FMNIST, f"{p}-labels-idx1-ubyte.gz")).astype(np.int64)
    if limit:
        x, y = x[:limit], y[:limit]
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    x = np.repeat(x[:, None, :, :], 3, axis=1)
    return np.ascontiguousarray(x), y


