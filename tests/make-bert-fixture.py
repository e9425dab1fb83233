#!/usr/bin/python3
"""make-bert-fixture.py - train the BERT-like fixture of
tests/fixtures/transformers/ (issue 13, item 5): a tiny text classifier
on a token task derived from Fashion-MNIST, exported the way PyTorch
exports it, at opset 13 and 17 (the same weights).

    /usr/bin/python3 tests/make-bert-fixture.py [OUTDIR]

Needs Debian's python3-torch (1.13) and python3-onnx, and the Fashion-MNIST
IDX files (dataset-fashion-mnist, or $FASHION_MNIST).  Single-threaded and
seeded: the same PyTorch on the same CPU writes the same files.  `make
check` needs none of this: the outputs are committed, and the test
(tests/tokens.test) makes its token arrays from the IDX files with the
same numpy code (tests/lib/bert_tokens.py).

The task: each image is a sentence of row tokens ([CLS], one token per
row between the first and last non-blank rows, padding to 29; see
bert_tokens.py), the label its class.  Lengths vary from 2 to 29, so the
padding mask matters.

The model (BERT's layout, small): token, position and token-type
embeddings summed, LayerNorm, nn.TransformerEncoder of 2 post-norm
layers (d 32, 2 heads, feed-forward 64, GELU, no dropout) with
src_key_padding_mask = (attention_mask == 0), the [CLS] position's
output through Linear(32, 10).  Inputs input_ids, attention_mask,
token_type_ids (int64 [N,29]), output logits [N,10], dynamic batch axis
"N".  The position ids are a buffer sliced to the input's length (the
export computes that from Shape: a static chain).

For each opset it writes bert_OPSET.onnx and bert_OPSET.json:
    {"model", "opset", "test_top1" (= "top1"), "test_loss", "n_test",
     "data", "seq_len", "vocab", "inputs", "output", "train_examples",
     "epochs", "params", "trained"}
"test_top1" is PyTorch's top-1 (percent) and "test_loss" its mean
cross-entropy on the 10,000 t10k sentences, computed from the float32
logits in float64.
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
import bert_tokens  # noqa: E402
from nptest import load_idx  # noqa: E402  (the one IDX reader)

TRAIN_EXAMPLES = 30000
EPOCHS = 3
BATCH = 64
LR = 2e-3
WEIGHT_DECAY = 0.01
D, HEADS, FF, LAYERS = 32, 2, 64, 2


def fashion_tokens(split):
    d = os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
    x = load_idx(os.path.join(d, "%s-images-idx3-ubyte.gz" % split))
    y = load_idx(os.path.join(d, "%s-labels-idx1-ubyte.gz" % split))
    ids, mask, types = bert_tokens.tokenize(x)
    return (torch.from_numpy(ids), torch.from_numpy(mask),
            torch.from_numpy(types), torch.from_numpy(y.astype(np.int64)))


class TinyBert(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(bert_tokens.VOCAB, D)
        self.pos = nn.Embedding(bert_tokens.SEQ_LEN, D)
        self.typ = nn.Embedding(bert_tokens.TYPES, D)
        self.norm = nn.LayerNorm(D)
        layer = nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0,
                                           activation="gelu",
                                           batch_first=True,
                                           norm_first=False)
        self.enc = nn.TransformerEncoder(layer, LAYERS,
                                         enable_nested_tensor=False)
        self.head = nn.Linear(D, 10)
        self.register_buffer("position_ids",
                             torch.arange(bert_tokens.SEQ_LEN)[None],
                             persistent=False)

    def forward(self, input_ids, attention_mask, token_type_ids):
        pos = self.position_ids[:, :input_ids.shape[1]]
        x = self.tok(input_ids) + self.pos(pos) + self.typ(token_type_ids)
        x = self.norm(x)
        x = self.enc(x, src_key_padding_mask=attention_mask == 0)
        return self.head(x[:, 0])


def train(model, data):
    ids, mask, types, y = data
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=LR,
                            weight_decay=WEIGHT_DECAY)
    steps = EPOCHS * ((len(y) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, LR, total_steps=steps)
    model.train()
    for _ in range(EPOCHS):
        perm = torch.randperm(len(y), generator=g)
        for i in range(0, len(y), BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            F.cross_entropy(model(ids[idx], mask[idx], types[idx]),
                            y[idx]).backward()
            opt.step()
            sched.step()
    model.eval()


def evaluate(model, data):
    """Top-1 (percent) and mean cross-entropy.  With autograd on, as
    when exporting: PyTorch 1.13's TransformerEncoderLayer takes its
    fused inference path only without autograd, and these numbers are
    of the computation the export traced."""
    ids, mask, types, y = data
    model.eval()
    hit, loss = 0, 0.0
    for i in range(0, len(y), 1000):
        s = slice(i, i + 1000)
        logits = model(ids[s], mask[s], types[s]).detach()
        hit += (logits.argmax(1) == y[s]).sum().item()
        loss += F.cross_entropy(logits.double(), y[s],
                                reduction="sum").item()
    return 100.0 * hit / len(y), loss / len(y)


def export(model, opset):
    f = io.BytesIO()
    z = torch.zeros(1, bert_tokens.SEQ_LEN, dtype=torch.int64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    torch.onnx.export(model, (z, torch.ones_like(z), z), f,
                      opset_version=opset, input_names=names,
                      output_names=["logits"],
                      dynamic_axes=dict({n: {0: "N"} for n in names},
                                        logits={0: "N"}))
    m = onnx.load_from_string(f.getvalue())
    onnx.checker.check_model(m, full_check=True)
    return m


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "fixtures",
        "transformers")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    tr = fashion_tokens("train")
    te = fashion_tokens("t10k")
    tr = tuple(t[:TRAIN_EXAMPLES] for t in tr)
    torch.manual_seed(0)
    model = TinyBert()
    t0 = time.time()
    train(model, tr)
    acc, loss = evaluate(model, te)
    print("bert  top-1 %.2f%%  loss %.6f  (%.0f s)"
          % (acc, loss, time.time() - t0), flush=True)
    for opset in (13, 17):
        name = "bert_%d" % opset
        m = export(model, opset)
        path = os.path.join(out, name + ".onnx")
        onnx.save(m, path)
        doc = {
            "model": name,
            "what": "BERT-like text classifier: token (83), position (29) "
                    "and token-type (2) embeddings, LayerNorm, "
                    "nn.TransformerEncoder 2 x post-norm (d %d, %d heads, "
                    "feed-forward %d, GELU), padding mask from "
                    "attention_mask, [CLS] pooling, Linear(%d, 10)"
                    % (D, HEADS, FF, D),
            "opset": opset,
            "test_top1": round(acc, 2),
            "top1": round(acc, 2),
            "test_loss": round(loss, 6),
            "n_test": len(te[3]),
            "data": bert_tokens.RECIPE,
            "seq_len": bert_tokens.SEQ_LEN,
            "vocab": bert_tokens.VOCAB,
            "inputs": ["input_ids [N,29] int64", "attention_mask [N,29] int64",
                       "token_type_ids [N,29] int64"],
            "output": "logits [N,10]",
            "train_examples": len(tr[3]),
            "epochs": EPOCHS,
            "params": sum(p.numel() for p in model.parameters()),
            "trained": "PyTorch %s, %d epochs on the first %d training "
                       "sentences, AdamW weight decay %g, one-cycle lr peak "
                       "%g, batch %d, seed 0, 1 thread"
                       % (torch.__version__, EPOCHS, len(tr[3]),
                          WEIGHT_DECAY, LR, BATCH),
        }
        with open(os.path.join(out, name + ".json"), "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        ops = sorted({n.op_type for n in m.graph.node})
        print("%-8s %6d bytes  %s" % (name, os.path.getsize(path),
                                      " ".join(ops)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
