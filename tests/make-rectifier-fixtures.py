#!/usr/bin/python3
"""make-rectifier-fixtures.py - train the rectifier fixtures of
tests/fixtures/rectifiers/ (issue 5): small Fashion-MNIST models, one per
rectifier and topology, exported the way PyTorch exports them.

    /usr/bin/python3 tests/make-rectifier-fixtures.py [OUTDIR]

Needs Debian's python3-torch (1.13) and python3-onnx, and the Fashion-MNIST
IDX files (dataset-fashion-mnist, or $FASHION_MNIST).  Single-threaded and
seeded: the same PyTorch on the same CPU writes the same files.  `make
check` needs none of this: the outputs are committed.

For each fixture NAME it writes NAME.onnx and NAME.json:
    {"model", "test_top1" (= "top1"), "test_loss", "n_test",
     "train_images", "epochs", "opset", "bn", "rectified_layers",
     "kinds": {kind: count}, ...}
"test_top1" is PyTorch's top-1 (percent) and "test_loss" its mean
cross-entropy on the 10,000 t10k images, with the preprocessing of the
shared models: pixel/255, then (x - 0.2860)/0.3530.  "kinds" counts the
rectifier kinds `nepenc inspect --json` must name.

The exports (opset 13 and 17; the MobileNet-like one also at opset 10,
where Clip has min/max attributes): torch.onnx.export with the input
"input" [N,1,28,28], the output "logits" [N,10], a dynamic batch axis
"N", and either training=TrainingMode.PRESERVE (BatchNormalization kept
as nodes, as in the shared models) or the default (eval mode:
BatchNormalization folded into the convolutions by the exporter).
Default constant folding otherwise (which also turns PReLU's slope
Unsqueeze into a [C,1,1] initializer).
"""

import io
import json
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
from nptest import load_idx  # noqa: E402  (the one IDX reader)

MEAN, STD = 0.2860, 0.3530
TRAIN_IMAGES = 6000
EPOCHS = 2
BATCH = 64


# ------------------------------------------------------------------ data

def fashion(split):
    d = os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
    x = load_idx(os.path.join(d, "%s-images-idx3-ubyte.gz" % split))
    y = load_idx(os.path.join(d, "%s-labels-idx1-ubyte.gz" % split))
    # As nepenc does it with --mean/--std: float32 throughout.
    xf = ((x.astype(np.float32) / np.float32(255.0) - np.float32(MEAN))
          / np.float32(STD)).astype(np.float32)
    return torch.from_numpy(xf[:, None]), torch.from_numpy(y.astype(np.int64))


# ---------------------------------------------------------------- models

def conv_bn(cin, cout, k=3, stride=1, groups=1):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout)]


class MLP(nn.Module):
    """Flatten, 784-128-64-10 with GELU (erf or tanh form)."""

    def __init__(self, approximate="none"):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 64)
        self.fc3 = nn.Linear(64, 10)
        self.act1 = nn.GELU(approximate=approximate)
        self.act2 = nn.GELU(approximate=approximate)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc3(self.act2(self.fc2(self.act1(self.fc1(x)))))


class CNN(nn.Module):
    """Three Conv-BN-act stages (16, 32, 32; strides 1, 2, 2), Flatten,
    Linear from 32x7x7.  act(C) makes the rectifier for C channels."""

    def __init__(self, act):
        super().__init__()
        layers = []
        for cin, cout, s in ((1, 16, 1), (16, 32, 2), (32, 32, 2)):
            layers += conv_bn(cin, cout, 3, s) + [act(cout)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class InvertedResidual(nn.Module):
    """MobileNet-V2 block: 1x1 expand, 3x3 depthwise, 1x1 project (no
    rectifier after it), identity residual when the shape allows."""

    def __init__(self, cin, cout, stride, t):
        super().__init__()
        mid = cin * t
        self.body = nn.Sequential(
            *conv_bn(cin, mid, 1), nn.ReLU6(),
            *conv_bn(mid, mid, 3, stride, groups=mid), nn.ReLU6(),
            *conv_bn(mid, cout, 1))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class MobileNetV2Like(nn.Module):
    BLOCKS = ((16, 16, 1), (16, 24, 2), (24, 24, 1), (24, 32, 2), (32, 32, 1))

    def __init__(self, t=4):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn(1, 16, 3), nn.ReLU6())
        self.blocks = nn.Sequential(*[InvertedResidual(a, b, s, t)
                                      for a, b, s in self.BLOCKS])
        self.head = nn.Sequential(*conv_bn(32, 64, 1), nn.ReLU6())
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, cout, 3, stride)
        self.conv2, self.bn2 = conv_bn(cout, cout, 3)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(*conv_bn(cin, cout, 1, stride))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (self.short(x) if self.short is not None else x))


class ResNet20(nn.Module):
    """CIFAR ResNet-20, narrow: stem + 3 stages x 3 basic blocks (8, 16,
    32 channels), projection shortcuts, 19 convolutions + Linear."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = conv_bn(1, 8, 3)
        blocks, cin = [], 8
        for cout, stride in ((8, 1), (16, 2), (32, 2)):
            for i in range(3):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ------------------------------------------------------- train, evaluate

def train(model, x, y, lr):
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9,
                          weight_decay=1e-4)
    steps = EPOCHS * ((len(x) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    model.train()
    for _ in range(EPOCHS):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            sched.step()
    model.eval()


@torch.no_grad()
def evaluate(model, x, y):
    """Top-1 (percent) and mean cross-entropy over x."""
    model.eval()
    hit, loss = 0, 0.0
    for i in range(0, len(x), 1000):
        logits = model(x[i:i + 1000])
        hit += (logits.argmax(1) == y[i:i + 1000]).sum().item()
        loss += F.cross_entropy(logits.double(), y[i:i + 1000],
                                reduction="sum").item()
    return 100.0 * hit / len(x), loss / len(x)


def export(model, opset, keep_bn):
    f = io.BytesIO()
    kw = {"training": torch.onnx.TrainingMode.PRESERVE} if keep_bn else {}
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), f,
                      opset_version=opset, input_names=["input"],
                      output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      **kw)
    m = onnx.load_from_string(f.getvalue())
    onnx.checker.check_model(m)
    return m


# Trained models: name -> (constructor, learning rate, what), and their
# exports: fixture name -> (model, opset, BN kept, {kind: layers}).
MODELS = {
    "mlp_gelu": (lambda: MLP("none"), 0.05, "MLP 784-128-64-10, GELU (erf)"),
    "mlp_gelu_tanh": (lambda: MLP("tanh"), 0.05,
                      "MLP 784-128-64-10, GELU (tanh approximation)"),
    "cnn_leaky": (lambda: CNN(lambda c: nn.LeakyReLU(0.1)), 0.05,
                  "CNN 3 x (Conv 3x3, BN, LeakyReLU 0.1) 16-32-32, Flatten, Linear"),
    "cnn_prelu": (lambda: CNN(lambda c: nn.PReLU(c)), 0.05,
                  "CNN 3 x (Conv 3x3, BN, PReLU per channel) 16-32-32, Flatten, Linear"),
    "cnn_silu": (lambda: CNN(lambda c: nn.SiLU()), 0.05,
                 "CNN 3 x (Conv 3x3, BN, SiLU) 16-32-32, Flatten, Linear"),
    "mbv2_relu6": (MobileNetV2Like, 0.05,
                   "MobileNet-V2-like: stem, 5 inverted residual blocks (t=4, "
                   "1x1 expand, 3x3 depthwise, 1x1 project, identity residual "
                   "where shapes allow), 1x1 head, ReLU6, BN, GAP, Linear"),
    "resnet20_relu": (ResNet20, 0.05,
                      "CIFAR ResNet-20, widths 8-16-32, projection shortcuts"),
}

EXPORTS = {
    "mlp_gelu_op13": ("mlp_gelu", 13, True, {"gelu(erf pattern)": 2}),
    "mlp_gelu_op17": ("mlp_gelu", 17, True, {"gelu(erf pattern)": 2}),
    "mlp_gelu_tanh_op13": ("mlp_gelu_tanh", 13, True,
                           {"gelu(tanh pattern)": 2}),
    "cnn_leaky_op13": ("cnn_leaky", 13, True, {"leaky_relu": 3}),
    "cnn_leaky_folded_op17": ("cnn_leaky", 17, False, {"leaky_relu": 3}),
    "cnn_prelu_op13": ("cnn_prelu", 13, True, {"prelu": 3}),
    "cnn_silu_op17": ("cnn_silu", 17, True, {"silu(pattern)": 3}),
    "mbv2_relu6_op13": ("mbv2_relu6", 13, True, {"relu6": 12}),
    "mbv2_relu6_folded_op17": ("mbv2_relu6", 17, False, {"relu6": 12}),
    "mbv2_relu6_op10": ("mbv2_relu6", 10, True, {"relu6": 12}),
    "resnet20_relu_op13": ("resnet20_relu", 13, True, {"relu": 19}),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "fixtures", "rectifiers")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    xtr, ytr = fashion("train")
    xte, yte = fashion("t10k")
    xtr, ytr = xtr[:TRAIN_IMAGES], ytr[:TRAIN_IMAGES]
    trained = {}
    for name, (make, lr, what) in MODELS.items():
        torch.manual_seed(0)
        model = make()
        t0 = time.time()
        train(model, xtr, ytr, lr)
        acc, loss = evaluate(model, xte, yte)
        trained[name] = (model, acc, loss, what)
        print("%-16s top-1 %.2f%%  (%.0f s)" % (name, acc, time.time() - t0),
              flush=True)
    for fix, (name, opset, keep_bn, kinds) in EXPORTS.items():
        model, acc, loss, what = trained[name]
        m = export(model, opset, keep_bn)
        path = os.path.join(out, fix + ".onnx")
        onnx.save(m, path)
        params = sum(p.numel() for p in model.parameters())
        doc = {
            "model": fix,
            "what": what,
            "test_top1": round(acc, 2),
            "top1": round(acc, 2),
            "test_loss": round(loss, 6),
            "n_test": len(xte),
            "train_images": len(xtr),
            "epochs": EPOCHS,
            "params": params,
            "opset": opset,
            "bn": "kept" if keep_bn else "folded by the exporter",
            "rectified_layers": sum(kinds.values()),
            "kinds": kinds,
            "input": "input [N,1,28,28] float32",
            "output": "logits [N,10]",
            "preprocess": {"scale": 1 / 255, "mean": MEAN, "std": STD},
            "trained": "PyTorch %s, %d epochs on the first %d training "
                       "images, SGD momentum 0.9 weight decay 1e-4, one-cycle "
                       "lr peak %g, batch %d, seed 0, 1 thread"
                       % (torch.__version__, EPOCHS, len(xtr),
                          MODELS[name][1], BATCH),
        }
        with open(os.path.join(out, fix + ".json"), "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print("%-24s %6d bytes  %s" % (fix, os.path.getsize(path),
                                       ", ".join(sorted(kinds))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
