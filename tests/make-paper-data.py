#!/usr/bin/python3
"""make-paper-data.py - the data of the paper-size fixtures as npy files
nepenc reads: Fashion-MNIST padded to 32x32 and repeated over 3 channels
(tests/paper_models.py), uint8 images [N,3,32,32] and int64 labels [N].

    /usr/bin/python3 tests/make-paper-data.py OUTDIR [TRAIN_N [TEST_N]]

writes OUTDIR/train-x.npy, train-y.npy (the first TRAIN_N training images,
default all 60,000) and test-x.npy, test-y.npy (the first TEST_N t10k
images, default all 10,000).  Then, for example:

    nepenc eval resnet18_cifar.onnx --data npy:OUT/test-x.npy,OUT/test-y.npy \\
        --mean 0.2860 --std 0.3530

Needs only numpy and the Fashion-MNIST IDX files.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paper_data  # noqa: E402


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    n_train = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    n_test = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    os.makedirs(out, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = paper_data.load_u8(split, n)
        np.save(os.path.join(out, f"{split}-x.npy"), x)
        np.save(os.path.join(out, f"{split}-y.npy"), y)


if __name__ == "__main__":
    main()
