#!/usr/bin/python3
"""score.py - the PyTorch test top-1 of the model train.py trained.

    score.py [--data DIR] [--state model.pt] [-o model.json]

Loads the state_dict train.py saved, scores it on Fashion-MNIST's 10,000
test images (preprocessed as train.py and nepenc.xml do) and writes
model.json: {"test_top1": ..., "test_images": ..., "parameters": ...}.
A separate step from train.py so that the test data is a prerequisite of
this small step only: changing it does not retrain the model.
"""

import argparse
import json
import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the pipeline folder
import torch  # noqa: E402

from train import TEST, Net, load_split, top1  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data", help="folder of the IDX files")
    ap.add_argument("--state", default="model.pt")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-o", "--output", default="model.json")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    net = Net()
    net.load_state_dict(torch.load(a.state))
    x, y = load_split(a.data, TEST)
    doc = {"test_top1": round(top1(net, x, y), 2), "test_images": len(x),
           "parameters": sum(p.numel() for p in net.parameters())}
    tmp = a.output + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
        f.write("\n")
    os.replace(tmp, a.output)
    print("score.py: PyTorch test top-1 %.2f%% on %d images"
          % (doc["test_top1"], len(x)))


if __name__ == "__main__":
    main()
