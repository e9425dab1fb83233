"""paper_models.py - the paper's CNN sizes on Fashion-MNIST (issue 10):
torchvision's ResNet-18 with the CIFAR stem and MobileNet-V2, on 3x32x32
inputs (their data: paper_data.py).

Shared by tests/make-paper-fixtures.py (trains and exports the fixtures),
tests/make-paper-data.py (writes the npy files nepenc reads) and
bench/torch_finetune_paper.py (the PyTorch side of bench/finetune).
"""

import numpy as np
import torch
import torch.nn as nn
import torchvision

from paper_data import MEAN, STD, load_u8  # noqa: F401 (re-exported)

def to_float(x_u8):
    x = torch.from_numpy(x_u8.astype(np.float32) / 255.0)
    return (x - MEAN) / STD


def resnet18_cifar():
    """torchvision ResNet-18, CIFAR stem: 3x3 stride-1 conv1, no max-pool
    (17 rectified layers, 11.2M parameters)."""
    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    return m


def mobilenet_v2():
    """torchvision MobileNet-V2 as it is, 10 classes (35 rectified
    layers: ReLU6 after the stem, every expansion and depthwise conv, and
    the last 1x1 conv)."""
    return torchvision.models.mobilenet_v2(num_classes=10)


ZOO = {"resnet18_cifar": resnet18_cifar, "mobilenet_v2": mobilenet_v2}


def load_onnx_weights(model, onnx_path):
    """Copies the ONNX file's initializers into the PyTorch model by name
    (the export keeps state_dict names: BatchNormalization is kept; a
    tensor equal to another is an Identity of it), so both sides of a
    benchmark start from the same weights."""
    import onnx
    from onnx import numpy_helper
    g = onnx.load(onnx_path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    # Equal tensors are stored once, the copies made by Identity nodes.
    for n in g.node:
        if n.op_type == "Identity" and n.input[0] in inits:
            inits[n.output[0]] = inits[n.input[0]]
    sd = model.state_dict()
    missing = [k for k in sd if k not in inits and not k.endswith("num_batches_tracked")]
    if missing:
        raise SystemExit(f"{onnx_path}: no initializer for {missing[:3]}")
    model.load_state_dict({k: torch.from_numpy(np.array(inits[k])) if k in inits else v
                           for k, v in sd.items()})
    return model
