#!/usr/bin/python3
"""make-preprocess-fixtures.py - the folder: preprocessing fixtures of
tests/test_image.c: a handful of small images (PNG grey, RGB, RGBA,
palette; JPEG grey and RGB) and, for each case in cases.txt, what
torchvision 0.14 makes of it on a PIL image:

    Image.open(f).convert("RGB" or "L")   (ImageFolder's loader; "L" for
                                           a one-channel model, as
                                           transforms.Grayscale does)
    -> Resize(R) -> CenterCrop(C) -> ToTensor() -> Normalize(mean, std)

stored as CASE.npy (float32, [1, C, H, W]).  Run with Debian's
python3-torchvision, python3-pil and python3-numpy:

    /usr/bin/python3 tests/make-preprocess-fixtures.py tests/fixtures/preprocess
"""
import os
import sys

import numpy as np
from PIL import Image
import torch
from torchvision import transforms as T

# name  image-folder  file  resize  crop  channels  mean  std  (0: none)
CASES = [
    ("rgb_down", "rgb37x23", "a.png", 16, 15, 3, "0.485,0.456,0.406", "0.229,0.224,0.225"),
    ("rgb_grey", "rgb37x23", "a.png", 20, 20, 1, "0.5", "0.25"),
    ("grey_up", "grey20x30", "a.png", 45, 40, 1, "0.5", "0.25"),
    ("rgba_pad", "rgba25x25", "a.png", 10, 12, 3, "0", "0"),
    ("palette", "pal30x18", "a.png", 12, 11, 3, "0.5", "0.5"),
    ("jpeg_rgb", "jpg41x29", "a.jpg", 17, 16, 3, "0.485,0.456,0.406", "0.229,0.224,0.225"),
    ("jpeg_grey", "jpggrey33", "a.jpg", 0, 31, 1, "0", "0"),
    ("plain", "rgb12x10", "a.png", 0, 0, 3, "0", "0"),
    ("down_odd", "rgb37x23", "a.png", 7, 5, 3, "0", "0"),
]


def pattern(w, h, c, seed):
    """Smooth gradients plus noise: resampling differences show."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    planes = [(xx * 255 // max(w - 1, 1) + yy * 7 * (k + 1)) % 256 for k in range(c)]
    a = np.stack(planes, -1).astype(np.int32) + rng.integers(-30, 31, (h, w, c))
    return np.clip(a, 0, 255).astype(np.uint8)


def make_images(top):
    def save(folder, name, im, **kw):
        d = os.path.join(top, folder, "x")
        os.makedirs(d, exist_ok=True)
        im.save(os.path.join(d, name), **kw)
    save("rgb37x23", "a.png", Image.fromarray(pattern(37, 23, 3, 1), "RGB"))
    save("grey20x30", "a.png", Image.fromarray(pattern(20, 30, 1, 2)[:, :, 0], "L"))
    save("rgba25x25", "a.png", Image.fromarray(pattern(25, 25, 4, 3), "RGBA"))
    pal = Image.fromarray(pattern(30, 18, 3, 4), "RGB").convert(
        "P", palette=Image.ADAPTIVE, colors=16)
    save("pal30x18", "a.png", pal)
    save("jpg41x29", "a.jpg", Image.fromarray(pattern(41, 29, 3, 5), "RGB"), quality=90)
    save("jpggrey33", "a.jpg", Image.fromarray(pattern(33, 33, 1, 6)[:, :, 0], "L"),
         quality=90)
    save("rgb12x10", "a.png", Image.fromarray(pattern(12, 10, 3, 7), "RGB"))


def numbers(s):
    return [float(v) for v in s.split(",")]


def expected(top, case):
    name, folder, file, resize, crop, ch, mean, std = case
    img = Image.open(os.path.join(top, folder, "x", file)).convert("RGB")
    if ch == 1:
        img = img.convert("L")
    steps = []
    if resize:
        steps.append(T.Resize(resize))
    if crop:
        steps.append(T.CenterCrop(crop))
    steps.append(T.ToTensor())
    if numbers(std) != [0.0]:
        steps.append(T.Normalize(numbers(mean), numbers(std)))
    x = T.Compose(steps)(img)
    return x.unsqueeze(0).numpy().astype(np.float32)


def main():
    top = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/preprocess"
    torch.manual_seed(0)
    make_images(top)
    with open(os.path.join(top, "cases.txt"), "w") as f:
        f.write("# name folder resize crop channels mean std (made by "
                "tests/make-preprocess-fixtures.py; 0: none)\n")
        for case in CASES:
            name, folder, _, resize, crop, ch, mean, std = case
            np.save(os.path.join(top, name + ".npy"), expected(top, case))
            f.write("%s %s %d %d %d %s %s\n" % (name, folder, resize, crop, ch, mean, std))


if __name__ == "__main__":
    main()
