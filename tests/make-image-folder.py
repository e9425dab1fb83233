#!/usr/bin/python3
"""make-image-folder.py - Fashion-MNIST (IDX, Debian's dataset-fashion-mnist)
written out as an image folder, one sub-folder per class, as users keep
their data (torchvision's ImageFolder layout):

    make-image-folder.py [--format png|jpeg] [--quality Q] [--first F]
                         [--count N] SPLIT OUT

SPLIT is train or test; OUT/<k>_<name>/<index>.png (the class folders
sort in label order).  Grey 8-bit images, written by PIL (python3-pil).
Used by tests/folder.test and bench/folders.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import nptest  # noqa: E402
from PIL import Image  # noqa: E402

CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
           "Shirt", "Sneaker", "Bag", "Boot"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--format", choices=["png", "jpeg"], default="png")
    ap.add_argument("--quality", type=int, default=95)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--count", type=int, default=0, help="0: all")
    ap.add_argument("split", choices=["train", "test"])
    ap.add_argument("out")
    a = ap.parse_args()
    images, labels = nptest.fashion_paths(a.split)
    x = nptest.load_idx(images)
    y = nptest.load_idx(labels)
    end = a.first + a.count if a.count else len(x)
    ext = "png" if a.format == "png" else "jpg"
    for k, name in enumerate(CLASSES):
        os.makedirs(os.path.join(a.out, "%d_%s" % (k, name)), exist_ok=True)
    for i in range(a.first, end):
        path = os.path.join(a.out, "%d_%s" % (y[i], CLASSES[y[i]]),
                            "%05d.%s" % (i, ext))
        im = Image.fromarray(x[i], "L")
        if a.format == "png":
            im.save(path)
        else:
            im.save(path, quality=a.quality)
    return 0


if __name__ == "__main__":
    sys.exit(main())
