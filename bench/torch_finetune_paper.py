#!/usr/bin/env python3
"""PyTorch side of bench/finetune for the paper-size fixtures
(tests/fixtures/paper: torchvision ResNet-18 with the CIFAR stem,
MobileNet-V2), the counterpart of ../shared/bench/torch_finetune.py for
the shared models: same recipe, same JSON line.

  OMP_NUM_THREADS=2 python3 bench/torch_finetune_paper.py MODEL [--epochs 1]
      [--batch 128] [--lr 0.01] [--limit N] [--test-limit N] [--bf16]

The model is torchvision's definition (tests/paper_models.py) with the
fixture's weights copied from its ONNX file by name, so both sides start
from the same weights.  Data: Fashion-MNIST padded to 3x32x32
(tests/paper_data.py), pixel/255 normalised with mean 0.2860, std 0.3530.
SGD, momentum 0.9, weight decay 1e-4, constant lr, no augmentation.

--bf16: PyTorch's own mixed precision for the comparison with nepenc's
--precision bf16: torch.autocast("cpu", bfloat16) around forward and
loss, model and batches channels-last (the layout its oneDNN bf16
kernels want), as Intel's guides for CPU bf16 training recommend."""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(top, "tests"))
import paper_models as pm  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--epochs", type=int, default=1)
ap.add_argument("--batch", type=int, default=128)
ap.add_argument("--lr", type=float, default=0.01)
ap.add_argument("--limit", type=int, default=0, help="train on the first N images only")
ap.add_argument("--test-limit", type=int, default=0, help="test on the first N t10k images")
ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
ap.add_argument("--bf16", action="store_true", help="autocast bf16, channels-last")
a = ap.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
xtr, ytr = pm.load_u8("train", a.limit)
xte, yte = pm.load_u8("test", a.test_limit)
m = pm.load_onnx_weights(pm.ZOO[a.model](),
                         os.path.join(top, "tests", "fixtures", "paper", a.model + ".onnx"))
fmt = torch.channels_last if a.bf16 else torch.contiguous_format
m = m.to(memory_format=fmt)


def batch(x_u8):
    return pm.to_float(x_u8).contiguous(memory_format=fmt)


def top1():
    m.eval()
    ok = 0
    with torch.no_grad():
        for i in range(0, len(xte), 500):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
                y = m(batch(xte[i:i + 500]))
            ok += (y.float().argmax(1).numpy() == yte[i:i + 500]).sum()
    return 100.0 * ok / len(xte)


before = top1()
opt = torch.optim.SGD(m.parameters(), lr=a.lr, momentum=0.9, weight_decay=1e-4)
t = time.time()
for _ in range(a.epochs):
    m.train()
    perm = torch.randperm(len(xtr)).numpy()
    for i in range(0, len(xtr), a.batch):
        idx = perm[i:i + a.batch]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            loss = F.cross_entropy(m(batch(xtr[idx])), torch.from_numpy(ytr[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
dt = time.time() - t
print(json.dumps({"peer": "pytorch " + torch.__version__ + (" bf16 autocast" if a.bf16 else ""),
                  "model": a.model, "threads": a.threads,
                  "epochs": a.epochs, "images": len(xtr) * a.epochs, "seconds": round(dt, 2),
                  "img_per_s": round(len(xtr) * a.epochs / dt, 1), "top1_before": before,
                  "top1_after": float(top1()),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
