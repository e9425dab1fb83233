"""transformer_models.py - the tiny image encoders of
tests/fixtures/transformers (issue 13): a ViT and a Swin-like encoder on
Fashion-MNIST 1x28x28, their export to ONNX, and the way back from an
exported file to PyTorch weights.

Shared by tests/make-transformer-fixtures.py (trains and exports the
fixtures) and bench/torch_finetune_vit.py (the PyTorch side of
bench/finetune for the ViT).  Data as the shared models: pixel/255, then
(x - 0.2860)/0.3530 (nepenc: `--mean 0.2860 --std 0.3530`).
"""

import io
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "lib"))
from nptest import load_idx  # noqa: E402  (the one IDX reader)
import torch
import torch.nn as nn

MEAN, STD = 0.2860, 0.3530
FMNIST = os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")


# ------------------------------------------------------------------ data

def load_u8(split="train", limit=0, first=0):
    """(images uint8 [N,1,28,28], labels int64 [N]) of the IDX files,
    images first..first+limit (limit 0: all)."""
    p = "train" if split == "train" else "t10k"
    x = load_idx(os.path.join(FMNIST, f"{p}-images-idx3-ubyte.gz"))
    y = load_idx(os.path.join(FMNIST, f"{p}-labels-idx1-ubyte.gz")).astype(np.int64)
    end = first + limit if limit else len(x)
    return np.ascontiguousarray(x[first:end, None]), y[first:end].copy()


def to_float(x_u8):
    """nepenc's preprocessing, in float32 as nepenc computes it."""
    x = torch.from_numpy(x_u8.astype(np.float32) / np.float32(255.0))
    return (x - np.float32(MEAN)) / np.float32(STD)


# ---------------------------------------------------------------- models

class ViT(nn.Module):
    """7x7 patches -> 16 tokens + a class token, learned position
    embedding, pre-norm nn.TransformerEncoder with GELU MLPs, a final
    LayerNorm on the class token, a linear head."""

    def __init__(self, dim=32, depth=2, heads=4, mlp_ratio=2, patch=7,
                 classes=10):
        super().__init__()
        n = (28 // patch) ** 2
        self.patch = nn.Conv2d(1, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim * mlp_ratio, dropout=0.0, activation="gelu",
            norm_first=True, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth,
                                             enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        x = self.encoder(x)
        return self.head(self.norm(x[:, 0]))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ws x ws windows with a relative
    position bias read from a ((2 ws - 1)^2, heads) table."""

    def __init__(self, dim, heads, ws):
        super().__init__()
        self.heads, self.ws = heads, ws
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rpb = nn.Parameter(torch.randn((2 * ws - 1) ** 2, heads) * 0.02)
        c = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws),
                                       indexing="ij")).flatten(1)
        r = (c[:, :, None] - c[:, None, :]).permute(1, 2, 0) + ws - 1
        self.register_buffer("rpi", (r[:, :, 0] * (2 * ws - 1) + r[:, :, 1]).flatten())

    def bias(self):
        n = self.ws * self.ws
        return self.rpb[self.rpi].view(n, n, -1).permute(2, 0, 1).unsqueeze(0)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads,
                                      c // self.heads).permute(2, 0, 3, 1, 4)
        a = (q * self.scale) @ k.transpose(-2, -1) + self.bias()
        a = a.softmax(-1)
        return self.proj((a @ v).transpose(1, 2).reshape(b, n, c))


class SwinBlock(nn.Module):
    def __init__(self, dim, heads, ws, shift, mlp_ratio):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, ws)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * mlp_ratio), nn.GELU(),
                                 nn.Linear(dim * mlp_ratio, dim))

    def forward(self, x):                      # [B, H, W, C]
        b, h, w, c = x.shape
        ws, s = self.ws, self.shift
        y = self.norm1(x)
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = y.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
        y = self.attn(y.reshape(-1, ws * ws, c))
        y = y.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
        y = y.reshape(b, h, w, c)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class Swin(nn.Module):
    """Swin-like: 7x7 patches -> a 4x4 token grid, a window-attention block
    (2x2 windows) then a shifted-window one (torch.roll by one token; no
    attention mask for the wrapped-around tokens), each with a GELU MLP;
    LayerNorm, mean over tokens, linear head.  No patch merging."""

    def __init__(self, dim=32, heads=2, ws=2, mlp_ratio=2, patch=7,
                 classes=10):
        super().__init__()
        self.patch = nn.Conv2d(1, dim, patch, patch)
        self.blocks = nn.Sequential(SwinBlock(dim, heads, ws, 0, mlp_ratio),
                                    SwinBlock(dim, heads, ws, 1, mlp_ratio))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).permute(0, 2, 3, 1)
        x = self.norm(self.blocks(x))
        return self.head(x.mean((1, 2)))


ZOO = {"vit": ViT, "swin": Swin}


# ---------------------------------------------------------------- export

def _keep_rpb_gather(model, m):
    """The exporter's constant folding turns each rpb[rpi]...unsqueeze(0)
    into one dense [1, heads, N, N] initializer (as it does for
    torchvision's Swin): the table PyTorch trains would be gone.  Put the
    lookup back as the unfolded export writes it: Gather(table, index) ->
    Reshape -> Transpose -> Unsqueeze, the table and the int64 index as
    initializers named by their state_dict keys."""
    from onnx import helper, numpy_helper
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    new_nodes = []
    for name, mod in model.named_modules():
        if not isinstance(mod, WindowAttention):
            continue
        want = mod.bias().detach().numpy()
        hits = [i for i in g.initializer
                if tuple(i.dims) == want.shape
                and np.array_equal(numpy_helper.to_array(i), want)]
        if len(hits) != 1:
            raise SystemExit(f"{name}: {len(hits)} folded bias initializers")
        out = hits[0].name
        g.initializer.remove(hits[0])
        del inits[out]
        n = mod.ws * mod.ws
        table, index = name + ".rpb", name + ".rpi"
        g.initializer.extend([
            numpy_helper.from_array(mod.rpb.detach().numpy(), table),
            numpy_helper.from_array(mod.rpi.numpy().astype(np.int64), index),
            numpy_helper.from_array(np.array([n, n, -1], np.int64), name + ".rpb_shape"),
            numpy_helper.from_array(np.array([0], np.int64), name + ".rpb_axes")])
        p = "/" + name.replace(".", "/") + "/rpb"
        new_nodes += [
            helper.make_node("Gather", [table, index], [p + "/Gather_output_0"],
                             name=p + "/Gather", axis=0),
            helper.make_node("Reshape", [p + "/Gather_output_0", name + ".rpb_shape"],
                             [p + "/Reshape_output_0"], name=p + "/Reshape"),
            helper.make_node("Transpose", [p + "/Reshape_output_0"],
                             [p + "/Transpose_output_0"], name=p + "/Transpose",
                             perm=[2, 0, 1]),
            helper.make_node("Unsqueeze", [p + "/Transpose_output_0", name + ".rpb_axes"],
                             [out], name=p + "/Unsqueeze")]
    nodes = new_nodes + list(g.node)
    del g.node[:]
    g.node.extend(nodes)


def export(model, opset):
    """The model as torch.onnx.export writes it (eval mode, default
    constant folding, input "input" [N,1,28,28], output "logits" [N,10],
    dynamic batch axis "N"), the Swin's bias lookups put back
    (_keep_rpb_gather).  Returns the onnx ModelProto."""
    import onnx
    model.eval()
    f = io.BytesIO()
    torch.onnx.export(model, torch.zeros(2, 1, 28, 28), f,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                      opset_version=opset)
    m = onnx.load_from_string(f.getvalue())
    if isinstance(model, Swin):
        _keep_rpb_gather(model, m)
    onnx.checker.check_model(m, full_check=True)
    return m


def load_onnx_weights(model, onnx_path):
    """Copies an exported file's weights into model (same class and
    sizes): initializers named by state_dict keys directly; a folded
    W.t() of a Linear (an onnx::MatMul_* initializer) through its MatMul
    node, whose name is the module's path (/encoder/layers.0/linear1/MatMul
    -> encoder.layers.0.linear1.weight, or self_attn's in_proj_weight);
    an initializer shared through Identity nodes by the Identity's
    output name."""
    import onnx
    from onnx import numpy_helper
    g = onnx.load(onnx_path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    sd = model.state_dict()
    got = {}
    for n in g.node:
        if n.op_type == "Identity" and n.input[0] in inits:
            got[n.output[0]] = inits[n.input[0]]
        if (n.op_type == "MatMul" and len(n.input) == 2 and n.input[1] in inits
                and n.input[1] not in sd):
            # Scope names repeat a Sequential's name: /blocks/blocks.0/...
            toks = []
            for t in re.split(r"[/.]", n.name.rsplit("/", 1)[0].strip("/")):
                if not toks or toks[-1] != t:
                    toks.append(t)
            path = ".".join(toks)
            for key in (path + ".weight", path + ".in_proj_weight"):
                if key in sd:
                    got[key] = inits[n.input[1]].T
                    break
    for k in sd:
        if k in inits:
            got[k] = inits[k]
    missing = [k for k in sd if k not in got]
    if missing:
        raise SystemExit(f"{onnx_path}: no initializer for {missing[:3]}")
    model.load_state_dict({k: torch.from_numpy(np.array(got[k])).reshape(sd[k].shape)
                           for k in sd})
    return model
