#!/usr/bin/python3
"""make-encoder-fixtures.py - train the encoder fixtures of
tests/fixtures/encoders/ (issue 13, item 4): a tiny ViT-style encoder on
Fashion-MNIST whose GELU MLPs NEPENTHE profiles per token and can remove.

    /usr/bin/python3 tests/make-encoder-fixtures.py [OUTDIR]

Needs Debian's python3-torch (1.13) and python3-onnx, and the Fashion-MNIST
IDX files (dataset-fashion-mnist, or $FASHION_MNIST).  Single-threaded and
seeded: the same PyTorch on the same CPU writes the same files.  `make
check` needs none of this: the outputs are committed.

The model (vit_pinned): 7x7 patches by a stride-7 Conv (16 tokens of
D = 32), a learned position embedding, three pre-norm
nn.TransformerEncoderLayer (2 heads, MLP 32-64-32 with GELU, no dropout,
batch_first), a final LayerNorm, the mean over tokens and a Linear head.
Trained with Adam (lr 2e-3, batch 64, 2 epochs on the first 6,000
training images).  Then two of its three GELU layers are *pinned*, so
that the main job has zero-entropy encoder layers to remove whatever
its short fine-tuning does: the first MLP's fc1 bias is lowered by 12
(every hidden pre-activation < 0 on the data: the layer is all OFF, the
MLP branch is about its output bias) and the third's raised by 12 (all
ON: GELU(z) = z to 1e-8 relative); those two biases are then frozen and
the rest trained one more epoch.  The script checks the pinned states on
all 60,000 training and 10,000 test images and records the margins
(how far from 0 the pre-activations stay).  The second GELU layer is
left as trained: the one NEPENTHE prunes.

For each fixture NAME it writes NAME.onnx and NAME.json (as
make-rectifier-fixtures.py): "test_top1" (PyTorch, percent) and
"test_loss" (mean cross-entropy) on the 10,000 t10k images with the
shared models' preprocessing (pixel/255, then (x - 0.2860)/0.3530),
"kinds" ({kind: layers} as `nepenc inspect` names them), "pinned"
({layer: state}) and "margins".  Exported at opset 13 (LayerNorm
decomposed: ReduceMean, Sub, Pow, Sqrt, Div) and 17
(LayerNormalization), input "input" [N,1,28,28], output "logits"
[N,10], dynamic batch "N".
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
LR = 2e-3
D, HEADS, FF, DEPTH = 32, 2, 64, 3
PIN = 12.0
PINNED = {0: "off", 2: "on"}


def fashion(split):
    d = os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
    x = load_idx(os.path.join(d, "%s-images-idx3-ubyte.gz" % split))
    y = load_idx(os.path.join(d, "%s-labels-idx1-ubyte.gz" % split))
    xf = ((x.astype(np.float32) / np.float32(255.0) - np.float32(MEAN))
          / np.float32(STD)).astype(np.float32)
    return torch.from_numpy(xf[:, None]), torch.from_numpy(y.astype(np.int64))


class ViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(1, D, 7, 7)
        self.pos = nn.Parameter(torch.randn(1, 16, D) * 0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0,
                                       activation="gelu", norm_first=True,
                                       batch_first=True)
            for _ in range(DEPTH))
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean(1))


def train(model, x, y, epochs, params):
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(params, lr=LR)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()


# Evaluation runs with autograd on (nothing is differentiated): in eval
# mode under no_grad, nn.TransformerEncoderLayer takes its fused fast path
# (torch._transformer_encoder_layer_fwd), which neither calls the forward
# hooks fc1_range needs nor computes what the exported graph computes,
# op by op.
@torch.enable_grad()
def evaluate(model, x, y):
    model.eval()
    hit, loss = 0, 0.0
    for i in range(0, len(x), 1000):
        logits = model(x[i:i + 1000]).detach()
        hit += (logits.argmax(1) == y[i:i + 1000]).sum().item()
        loss += F.cross_entropy(logits.double(), y[i:i + 1000],
                                reduction="sum").item()
    return 100.0 * hit / len(x), loss / len(x)


@torch.enable_grad()
def fc1_range(model, x, layer):
    """min and max over x of layer's fc1 pre-activation (every token)."""
    lo, hi = float("inf"), float("-inf")
    grab = {}
    L = model.layers[layer]
    model.eval()
    h = L.linear1.register_forward_hook(lambda m, i, o: grab.update(z=o.detach()))
    for i in range(0, len(x), 1000):
        model(x[i:i + 1000])
        lo, hi = min(lo, grab["z"].min().item()), max(hi, grab["z"].max().item())
    h.remove()
    return lo, hi


def export(model, opset):
    f = io.BytesIO()
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), f,
                      opset_version=opset, input_names=["input"],
                      output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    m = onnx.load_from_string(f.getvalue())
    onnx.checker.check_model(m, full_check=True)
    return m


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "fixtures", "encoders")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    xall, yall = fashion("train")
    xte, yte = fashion("t10k")
    xtr, ytr = xall[:TRAIN_IMAGES], yall[:TRAIN_IMAGES]
    model = ViT()
    t0 = time.time()
    train(model, xtr, ytr, EPOCHS, model.parameters())
    before = evaluate(model, xte, yte)
    frozen = []
    with torch.no_grad():
        for layer, state in PINNED.items():
            b = model.layers[layer].linear1.bias
            b += -PIN if state == "off" else PIN
            frozen.append(b)
    rest = [p for p in model.parameters() if all(p is not f for f in frozen)]
    train(model, xtr, ytr, 1, rest)
    acc, loss = evaluate(model, xte, yte)
    margins = {}
    for layer, state in PINNED.items():
        lo, hi = fc1_range(model, torch.cat([xall, xte]), layer)
        ok = hi < 0 if state == "off" else lo > 0
        if not ok:
            print("layer %d is not all %s: fc1 range [%g, %g]" % (layer, state, lo, hi))
            return 1
        margins["layers.%d" % layer] = {"state": state, "min": round(lo, 3),
                                        "max": round(hi, 3)}
    print("vit_pinned: top-1 %.2f%% before pinning, %.2f%% after (%.0f s); %s"
          % (before[0], acc, time.time() - t0, margins), flush=True)
    params = sum(p.numel() for p in model.parameters())
    for opset in (13, 17):
        fix = "vit_pinned_op%d" % opset
        m = export(model, opset)
        path = os.path.join(out, fix + ".onnx")
        onnx.save(m, path)
        doc = {
            "model": fix,
            "what": "ViT-style encoder: 7x7 patches (16 tokens, D 32), "
                    "3 pre-norm encoder layers (2 heads, GELU MLP 64), "
                    "mean over tokens, Linear; GELU layers 1 and 3 pinned "
                    "all OFF and all ON",
            "test_top1": round(acc, 2),
            "top1": round(acc, 2),
            "test_loss": round(loss, 6),
            "top1_before_pinning": round(before[0], 2),
            "n_test": len(xte),
            "train_images": len(xtr),
            "epochs": EPOCHS,
            "params": params,
            "opset": opset,
            "rectified_layers": DEPTH,
            "kinds": {"gelu(erf pattern)": DEPTH},
            "pinned": {"layers.%d" % k: v for k, v in PINNED.items()},
            "margins": margins,
            "input": "input [N,1,28,28] float32",
            "output": "logits [N,10]",
            "preprocess": {"scale": 1 / 255, "mean": MEAN, "std": STD},
            "trained": "PyTorch %s, Adam lr %g batch %d, %d epochs on the "
                       "first %d training images, fc1 biases of layers 0 "
                       "and 2 moved by -/+%g, frozen, then 1 more epoch of "
                       "the rest; seed 0, 1 thread"
                       % (torch.__version__, LR, BATCH, EPOCHS, len(xtr), PIN),
        }
        with open(os.path.join(out, fix + ".json"), "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print("%-20s %6d bytes" % (fix, os.path.getsize(path)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
