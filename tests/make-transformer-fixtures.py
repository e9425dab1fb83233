#!/usr/bin/python3
"""make-transformer-fixtures.py - train the image-encoder fixtures of
tests/fixtures/transformers/ (issue 13): a tiny ViT and a tiny Swin-like
encoder on Fashion-MNIST 1x28x28 (tests/transformer_models.py says what
they are), each trained briefly and exported at opsets 13 and 17 (one
model, two exports: the same weights).

    /usr/bin/python3 tests/make-transformer-fixtures.py [OUTDIR]

Needs Debian's python3-torch (1.13) and python3-onnx, and the
Fashion-MNIST IDX files.  One thread, seeded: the same PyTorch on the
same CPU writes the same files.  `make check` needs none of this: the
outputs are committed.

For each fixture NAME_OPSET (vit_13, vit_17, swin_13, swin_17) it writes
NAME_OPSET.onnx and NAME_OPSET.json:
    {"model", "opset", "test_top1", "test_loss", "n_test",
     "test_top1_2000", "test_loss_2000", "train_images", "epochs",
     "params", "input", "output", "preprocess", "trained", "export",
     "adamw": {...}}
test_top1/test_loss: PyTorch's top-1 (percent) and mean cross-entropy on
the 10,000 t10k images; *_2000 the same on the first 2,000.

"adamw" (vit only) is the recipe tests/transformers.test runs in nepenc
(`nepenc finetune --optimizer adamw ...`, its "nepenc_args") and
PyTorch's result of it: one epoch over the first 4,000 images of the
training set (images the fixture never saw: it was trained on images
10000..), batches of 64 in a fresh random order, torch.optim.AdamW with
a LambdaLR of linear warmup then cosine (the closed form doc/nepenc.1
gives), scored on the 10,000 t10k images.  The order is the one thing
the two sides cannot share, so PyTorch runs it with SEEDS orders: the
test compares nepenc with their mean, and "top1_after_std" says how far
orders alone move it.

vit_13_sgd_step.onnx is vit_13 after one full-batch SGD step (the first
64 training images, lr 1, no momentum, no weight decay), exported the
same way: every parameter PyTorch trains moved by its gradient.
"""

import json
import math
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import transformer_models as tm  # noqa: E402

BATCH = 64
TRAIN_FIRST = 10000      # fixtures train on training images 10000..
# name -> (train images, epochs, peak lr)
RECIPES = {"vit": (20000, 3, 2e-3), "swin": (20000, 3, 2e-3)}
OPSETS = (13, 17)
ADAMW = {"train_images": 4000, "batch": 64, "lr": 5e-4, "beta1": 0.9,
         "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01, "warmup": 8,
         "schedule": "cosine", "epochs": 1}
SEEDS = 5
STEP_IMAGES, STEP_LR = 64, 1.0


def evaluate(model, x, y):
    """Top-1 (percent) and mean cross-entropy.  With autograd on, so that
    nn.TransformerEncoderLayer takes the path the export traced (its eval
    fast path is another kernel)."""
    model.eval()
    ok, loss = 0, 0.0
    with torch.enable_grad():
        for i in range(0, len(x), 500):
            z = model(tm.to_float(x[i:i + 500])).detach()
            t = torch.from_numpy(y[i:i + 500])
            loss += F.cross_entropy(z.double(), t, reduction="sum").item()
            ok += int((z.argmax(1) == t).sum())
    return 100.0 * ok / len(x), loss / len(x)


def lr_lambda(warmup, schedule, total):
    """doc/nepenc.1's warmup: factor (s+1)/W for the first W steps, then
    the schedule with its clock starting after them."""
    def f(s):
        if s < warmup:
            return (s + 1) / warmup
        if schedule == "cosine" and total > warmup:
            return 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup)))
        return 1.0
    return f


def adamw_epochs(model, x, y, r, seed):
    """nepenc finetune's loop: per epoch a fresh permutation, batches in
    order, the last one partial, mean cross-entropy."""
    opt = torch.optim.AdamW(model.parameters(), lr=r["lr"],
                            betas=(r["beta1"], r["beta2"]), eps=r["eps"],
                            weight_decay=r["weight_decay"])
    steps = r["epochs"] * ((len(x) + r["batch"] - 1) // r["batch"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda(r["warmup"], r["schedule"], steps))
    g = torch.Generator().manual_seed(seed)
    for _ in range(r["epochs"]):
        model.train()
        perm = torch.randperm(len(x), generator=g).numpy()
        for i in range(0, len(x), r["batch"]):
            idx = perm[i:i + r["batch"]]
            loss = F.cross_entropy(model(tm.to_float(x[idx])),
                                   torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


def adamw_reference(name, model, xte, yte):
    r = dict(ADAMW)
    x, y = tm.load_u8("train", r["train_images"])
    res = []
    for seed in range(SEEDS):
        m = tm.ZOO[name]()
        m.load_state_dict(model.state_dict())
        adamw_epochs(m, x, y, r, seed)
        res.append(evaluate(m, xte, yte))
        print(f"  adamw seed {seed}: top-1 {res[-1][0]:.2f} loss {res[-1][1]:.4f}",
              flush=True)
    top = np.array([t for t, _ in res])
    los = np.array([lo for _, lo in res])
    r.update({
        "top1_after": [round(float(t), 2) for t in top],
        "top1_after_mean": round(float(top.mean()), 3),
        "top1_after_std": round(float(top.std(ddof=1)), 3),
        "loss_after": [round(float(lo), 6) for lo in los],
        "loss_after_mean": round(float(los.mean()), 6),
        "loss_after_std": round(float(los.std(ddof=1)), 6),
        "seeds": SEEDS,
        "n_test": len(xte),
        "nepenc_args": ["--optimizer", "adamw", "--epochs", str(r["epochs"]),
                        "--batch", str(r["batch"]), "--lr", repr(r["lr"]),
                        "--beta1", repr(r["beta1"]), "--beta2", repr(r["beta2"]),
                        "--adam-eps", repr(r["eps"]),
                        "--weight-decay", repr(r["weight_decay"]),
                        "--warmup", str(r["warmup"]),
                        "--lr-schedule", r["schedule"],
                        "--limit", str(r["train_images"])],
    })
    return r


def sgd_step(model, out):
    """One full-batch SGD step, exported as the fixture is."""
    x, y = tm.load_u8("train", STEP_IMAGES)
    m = tm.ViT()
    m.load_state_dict(model.state_dict())
    m.train()
    opt = torch.optim.SGD(m.parameters(), lr=STEP_LR)
    loss = F.cross_entropy(m(tm.to_float(x)), torch.from_numpy(y))
    opt.zero_grad()
    loss.backward()
    opt.step()
    onnx.save(tm.export(m, 13), out)
    return {"images": STEP_IMAGES, "lr": STEP_LR, "loss_before": round(loss.item(), 6)}


def train(model, x, y, epochs, lr):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * ((len(x) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lr_lambda(steps // 10, "cosine", steps))
    g = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=g).numpy()
        for i in range(0, len(x), BATCH):
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(model(tm.to_float(x[idx])),
                                   torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


def check_names(a, b):
    """The stepped export must name and shape its initializers as the
    fixture's (same graph, other numbers)."""
    ia = {i.name: tuple(i.dims) for i in onnx.load(a).graph.initializer}
    ib = {i.name: tuple(i.dims) for i in onnx.load(b).graph.initializer}
    if ia != ib:
        raise SystemExit(f"{b}: initializers differ from {a}'s")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "fixtures", "transformers")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    xte, yte = tm.load_u8("test")
    only = sys.argv[2:] or list(RECIPES)
    for name in only:
        n_train, epochs, lr = RECIPES[name]
        torch.manual_seed(0)
        model = tm.ZOO[name]()
        x, y = tm.load_u8("train", n_train, TRAIN_FIRST)
        t = time.time()
        train(model, x, y, epochs, lr)
        secs = time.time() - t
        top1, loss = evaluate(model, xte, yte)
        top1_2k, loss_2k = evaluate(model, xte[:2000], yte[:2000])
        print(f"{name}: top-1 {top1:.2f} loss {loss:.4f} ({secs:.0f} s)", flush=True)
        adamw = adamw_reference(name, model, xte, yte) if name == "vit" else None
        for opset in OPSETS:
            base = f"{name}_{opset}"
            path = os.path.join(out, base + ".onnx")
            onnx.save(tm.export(model, opset), path)
            # The way back gives the same function (bench/finetune's
            # PyTorch side starts from these files).
            back = tm.load_onnx_weights(tm.ZOO[name](), path)
            if evaluate(back, xte[:2000], yte[:2000]) != (top1_2k, loss_2k):
                raise SystemExit(f"{path}: load_onnx_weights does not round-trip")
            doc = {
                "model": name,
                "opset": opset,
                "test_top1": round(top1, 2),
                "test_loss": round(loss, 6),
                "n_test": len(xte),
                "test_top1_2000": round(top1_2k, 2),
                "test_loss_2000": round(loss_2k, 6),
                "train_images": n_train,
                "train_first": TRAIN_FIRST,
                "epochs": epochs,
                "params": sum(p.numel() for p in model.parameters()),
                "input": "input [N,1,28,28] float32",
                "output": "logits [N,10]",
                "preprocess": {"data": "Fashion-MNIST IDX (uint8)",
                               "scale": 1 / 255, "mean": tm.MEAN, "std": tm.STD},
                "trained": f"PyTorch {torch.__version__}, {epochs} epochs on "
                           f"training images {TRAIN_FIRST}..{TRAIN_FIRST + n_train - 1}, "
                           f"AdamW weight decay 0.05, peak lr {lr}, warmup "
                           f"then cosine, batch {BATCH}, seed 0, 1 thread, "
                           f"{secs:.0f} s",
                "export": "torch.onnx.export, eval mode, default constant "
                          "folding" + ("; each window attention's folded "
                                       "relative-position bias replaced by "
                                       "Gather(table, index) -> Reshape -> "
                                       "Transpose -> Unsqueeze, as the "
                                       "unfolded export writes it"
                                       if name == "swin" else ""),
            }
            if adamw and opset == 13:
                doc["adamw"] = adamw
                step = os.path.join(out, base + "_sgd_step.onnx")
                doc["sgd_step"] = sgd_step(model, step)
                doc["sgd_step"]["file"] = os.path.basename(step)
                check_names(path, step)
            with open(os.path.join(out, base + ".json"), "w") as f:
                json.dump(doc, f, indent=1)
                f.write("\n")


if __name__ == "__main__":
    main()
