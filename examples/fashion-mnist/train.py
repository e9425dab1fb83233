#!/usr/bin/python3
"""train.py - train a small Fashion-MNIST CNN and export it as ONNX.

    train.py [--data DIR] [--limit N] [--epochs E] [--seed S] [--threads T]
             [-o model.onnx] [--state model.pt]

The network: six Conv-BatchNorm layers, each followed by a ReLU (in the two
ResNet basic blocks, the second one after the identity shortcut's Add), a
stride-2 layer between the blocks, global average pooling and a Linear
classifier; 28,410 parameters, so one epoch on 10,000 images takes well
under a minute on two cores.  Input: float [N, 1, 28, 28], pixels scaled
to [0, 1] then normalized with mean 0.2860 and std 0.3530 (nepenc's --mean
and --std in nepenc.xml must say the same).

Writes model.onnx (opset 13, BatchNormalization kept, dynamic batch axis)
and model.pt (the state_dict, for score.py).  Deterministic: fixed seeds,
a fixed data order and a fixed thread count.  Uses Debian's python3 with
python3-torch (1.13).
"""

import argparse
import gzip
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

MEAN, STD = 0.2860, 0.3530
TRAIN = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")
TEST = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def load_idx(path):
    """An unsigned-byte IDX file (gzip or raw) as a numpy array."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[:3] != b"\0\0\x08":
        sys.exit("%s: not an unsigned-byte IDX file" % path)
    rank = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big")
            for i in range(rank)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * rank).reshape(dims)


def load_split(folder, files, limit=None):
    """(x float [N,1,28,28] normalized, y int64 [N]) of one split."""
    x = load_idx(os.path.join(folder, files[0]))[:limit]
    y = load_idx(os.path.join(folder, files[1]))[:limit]
    x = torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1)
    return (x - MEAN) / STD, torch.from_numpy(y.astype(np.int64))


def conv_bn(cin, cout, stride=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout))


class Block(nn.Module):
    """Conv-BN-ReLU, Conv-BN, plus the input, ReLU (a ResNet basic block)."""

    def __init__(self, c):
        super().__init__()
        self.a = conv_bn(c, c)
        self.b = conv_bn(c, c)

    def forward(self, x):
        return F.relu(self.b(F.relu(self.a(x))) + x)


class Net(nn.Module):
    def __init__(self, width=16):
        super().__init__()
        self.stem = conv_bn(1, width)
        self.block1 = Block(width)
        self.down = conv_bn(width, 2 * width, stride=2)
        self.block2 = Block(2 * width)
        self.fc = nn.Linear(2 * width, 10)

    def forward(self, x):
        x = self.block1(F.relu(self.stem(x)))
        x = self.block2(F.relu(self.down(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def top1(net, x, y, batch=500):
    net.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            right += int((net(x[i:i + batch]).argmax(1) ==
                          y[i:i + batch]).sum())
    return 100.0 * right / len(x)


def train(net, x, y, epochs, seed, batch=32, lr=0.1):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9,
                          weight_decay=1e-4, nesterov=True)
    steps = epochs * ((len(x) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    for e in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=g)
        total, n = 0.0, 0
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
            n += len(idx)
        print("train.py: epoch %d/%d loss %.4f" % (e + 1, epochs, total / n),
              flush=True)


def export(net, path):
    """ONNX, opset 13, BatchNormalization kept as its own node (no constant
    folding into the Conv: nepenc folds it itself and trains its scale and
    shift), dynamic batch axis; written atomically."""
    net.eval()
    tmp = path + ".tmp"
    torch.onnx.export(net, torch.zeros(1, 1, 28, 28), tmp, opset_version=13,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      training=torch.onnx.TrainingMode.PRESERVE,
                      do_constant_folding=False)
    import onnx
    m = onnx.load(tmp)
    onnx.checker.check_model(m)
    if not any(n.op_type == "BatchNormalization" for n in m.graph.node):
        os.unlink(tmp)
        sys.exit("train.py: the export has no BatchNormalization node")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data", help="folder of the IDX files")
    ap.add_argument("--limit", type=int, default=10000,
                    help="train on the first N training images")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output", default="model.onnx")
    ap.add_argument("--state", default="model.pt")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    x, y = load_split(a.data, TRAIN, a.limit)
    net = Net()
    train(net, x, y, a.epochs, a.seed)
    print("train.py: top-1 on the %d training images: %.2f%%"
          % (len(x), top1(net, x, y)), flush=True)
    tmp = a.state + ".tmp"
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, a.state)
    export(net, a.output)
    print("train.py: wrote %s and %s" % (a.output, a.state))


if __name__ == "__main__":
    main()
