#!/usr/bin/python3
"""make-paper-fixtures.py - train the paper-size fixtures of
tests/fixtures/paper/ (issue 10): torchvision's ResNet-18 with the CIFAR
stem and MobileNet-V2 on Fashion-MNIST padded to 3x32x32
(tests/paper_models.py says how), trained briefly, exported as the shared
models are (opset 13, BatchNormalization kept).

    /usr/bin/python3 tests/make-paper-fixtures.py [OUTDIR]

Needs Debian's python3-torch, python3-torchvision and python3-onnx, and the
Fashion-MNIST IDX files.  Seeded, 2 threads.  `make check` needs none of
this: the outputs are committed.

For each fixture NAME it writes NAME.onnx and NAME.json:
    {"model", "test_top1", "test_loss", "n_test", "train_images", "epochs",
     "params", "opset", "rectified_layers", "input", "preprocess", ...}
test_top1/test_loss are PyTorch's on the first N_TEST t10k images.
"""

import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import paper_models as pm  # noqa: E402

N_TEST = 2000
BATCH = 64
# name -> (train images, epochs, peak lr, rectified layers)
RECIPES = {
    "resnet18_cifar": (4000, 1, 0.05, 17),
    "mobilenet_v2": (12000, 2, 0.1, 35),
}


def evaluate(model, x, y):
    model.eval()
    ok, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            z = model(pm.to_float(x[i:i + 500]))
            loss += F.cross_entropy(z, torch.from_numpy(y[i:i + 500]),
                                    reduction="sum").item()
            ok += (z.argmax(1).numpy() == y[i:i + 500]).sum()
    return 100.0 * ok / len(x), loss / len(x)


def train(model, x, y, epochs, lr):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9,
                          weight_decay=1e-4)
    steps = epochs * ((len(x) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g).numpy()
        for i in range(0, len(x), BATCH):
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(model(pm.to_float(x[idx])),
                                   torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "fixtures", "paper")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(2)
    xte, yte = pm.load_u8("test", N_TEST)
    for name, (n_train, epochs, lr, layers) in RECIPES.items():
        torch.manual_seed(0)
        model = pm.ZOO[name]()
        x, y = pm.load_u8("train", n_train)
        t = time.time()
        train(model, x, y, epochs, lr)
        top1, loss = evaluate(model, xte, yte)
        path = os.path.join(out, name + ".onnx")
        torch.onnx.export(model, torch.zeros(1, 3, 32, 32), path,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          opset_version=13,
                          training=torch.onnx.TrainingMode.PRESERVE,
                          do_constant_folding=True)
        doc = {
            "model": name,
            "test_top1": round(float(top1), 2),
            "test_loss": round(float(loss), 6),
            "n_test": N_TEST,
            "train_images": n_train,
            "epochs": epochs,
            "params": sum(p.numel() for p in model.parameters()),
            "opset": 13,
            "bn": "kept",
            "rectified_layers": layers,
            "input": "input [N,3,32,32] float32",
            "output": "logits [N,10]",
            "preprocess": {"data": "Fashion-MNIST padded by 2 to 32x32, "
                                   "repeated over 3 channels (uint8)",
                           "scale": 1 / 255, "mean": pm.MEAN, "std": pm.STD},
            "trained": f"PyTorch {torch.__version__}, {epochs} epoch(s) on the "
                       f"first {n_train} training images, SGD momentum 0.9 "
                       f"weight decay 1e-4, one-cycle lr peak {lr}, batch "
                       f"{BATCH}, seed 0, 2 threads, {time.time() - t:.0f} s",
        }
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print(f"{name}: top-1 {top1:.2f} loss {loss:.4f} "
              f"({time.time() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
