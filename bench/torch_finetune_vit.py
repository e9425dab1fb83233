#!/usr/bin/env python3
"""PyTorch side of bench/finetune for the image-encoder fixture vit_13
(tests/fixtures/transformers: a tiny ViT on Fashion-MNIST 1x28x28), the
counterpart of bench/torch_finetune_paper.py: same recipe as nepenc's
run in bench/finetune, same JSON line.

  OMP_NUM_THREADS=2 python3 bench/torch_finetune_vit.py [vit_13] [--epochs 1]
      [--batch 128] [--lr 5e-4] [--weight-decay 0.01] [--limit N]
      [--test-limit N]

The model is tests/transformer_models.py's ViT with the fixture's weights
copied from its ONNX file (load_onnx_weights), so both sides start from
the same weights.  Data: the Fashion-MNIST IDX files, pixel/255
normalised with mean 0.2860, std 0.3530.  torch.optim.AdamW (betas 0.9,
0.999, eps 1e-8), constant lr, no warmup, no augmentation; a fresh
random order per epoch, the last batch partial."""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(top, "tests"))
import transformer_models as tm  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("model", nargs="?", default="vit_13")
ap.add_argument("--epochs", type=int, default=1)
ap.add_argument("--batch", type=int, default=128)
ap.add_argument("--lr", type=float, default=5e-4)
ap.add_argument("--weight-decay", type=float, default=0.01)
ap.add_argument("--limit", type=int, default=0, help="train on the first N images only")
ap.add_argument("--test-limit", type=int, default=0, help="test on the first N t10k images")
ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
kind = a.model.split("_")[0]
xtr, ytr = tm.load_u8("train", a.limit)
xte, yte = tm.load_u8("test", a.test_limit)
m = tm.load_onnx_weights(tm.ZOO[kind](), os.path.join(
    top, "tests", "fixtures", "transformers", a.model + ".onnx"))


def top1():
    # Autograd on: nn.TransformerEncoderLayer's eval fast path is another
    # kernel than the one the fixture's numbers (and the export) used.
    m.eval()
    ok = 0
    with torch.enable_grad():
        for i in range(0, len(xte), 500):
            z = m(tm.to_float(xte[i:i + 500])).detach()
            ok += int((z.argmax(1).numpy() == yte[i:i + 500]).sum())
    return 100.0 * ok / len(xte)


before = top1()
opt = torch.optim.AdamW(m.parameters(), lr=a.lr, weight_decay=a.weight_decay)
t = time.time()
for _ in range(a.epochs):
    m.train()
    perm = torch.randperm(len(xtr)).numpy()
    for i in range(0, len(xtr), a.batch):
        idx = perm[i:i + a.batch]
        loss = F.cross_entropy(m(tm.to_float(xtr[idx])), torch.from_numpy(ytr[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
dt = time.time() - t
print(json.dumps({"peer": "pytorch " + torch.__version__, "model": a.model, "threads": a.threads,
                  "epochs": a.epochs, "images": len(xtr) * a.epochs, "seconds": round(dt, 2),
                  "img_per_s": round(len(xtr) * a.epochs / dt, 1), "top1_before": before,
                  "top1_after": float(top1()),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
