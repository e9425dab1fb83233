#!/usr/bin/python3
"""make_broken.py - regenerate the broken-model corpus in tests/broken/.

The files are committed; run this only to change or add a case:
    /usr/bin/python3 tests/make_broken.py [FOLDER]
Every case derives from one tiny, valid model (good.onnx, also written):
    X[N,4] -> MatMul(W[4,3]) -> h -> Add(B[3]) -> a -> Relu -> Y[N,3]
tests/lib/broken.py holds the table of what nepenc must say about each file.
Deterministic: same onnx version, same bytes.
"""

import os
import random
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

BIG = 1 << 62


def tensor(name, dims, raw):
    """A FLOAT TensorProto with exactly these dims and raw bytes, whether
    or not they agree."""
    t = TensorProto()
    t.name = name
    t.data_type = TensorProto.FLOAT
    t.dims.extend(dims)
    t.raw_data = raw
    return t


def weights():
    w = np.arange(12, dtype=np.float32).reshape(4, 3) / 8
    b = np.array([0.5, -0.25, 1.0], dtype=np.float32)
    return numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")


def model(nodes=None, inits=None, outputs=None, value_info=()):
    """The tiny model, with parts replaced."""
    if nodes is None:
        nodes = [helper.make_node("MatMul", ["X", "W"], ["h"], name="mm"),
                 helper.make_node("Add", ["h", "B"], ["a"], name="add"),
                 helper.make_node("Relu", ["a"], ["Y"], name="relu")]
    if inits is None:
        inits = list(weights())
    if outputs is None:
        outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT,
                                                 ["N", 3])]
    g = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        outputs, initializer=inits, value_info=list(value_info))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="make_broken.py")
    m.ir_version = 7
    return m


def external(name, location, length=48):
    """W stored externally at LOCATION."""
    w, b = weights()
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"),
                 ("length", str(length))):
        e = w.external_data.add()
        e.key, e.value = k, v
    return model(inits=[w, b])


def flipped(good, seed, count):
    """GOOD with COUNT random bytes of its middle half replaced."""
    rnd = random.Random(seed)
    data = bytearray(good)
    for _ in range(count):
        i = rnd.randrange(len(data) // 4, 3 * len(data) // 4)
        data[i] = rnd.randrange(256)
    return bytes(data)


def cases():
    """(file name, bytes or ModelProto) for every case."""
    good_m = model()
    good = good_m.SerializeToString()
    w, b = weights()
    nodes = list(good_m.graph.node)
    out = [("good.onnx", good_m),
           ("empty.onnx", b""),
           ("truncated.onnx", good[:len(good) // 2]),
           ("random.onnx", bytes(random.Random(1).randrange(256)
                                 for _ in range(512))),
           ("text.onnx", b"This is not a model.\nJust some text.\n"),
           ("wrong_size.onnx",
            model(inits=[tensor("W", [4, 3], w.raw_data[:40]), b])),
           ("negative_dim.onnx",
            model(inits=[tensor("W", [-4, 3], w.raw_data), b])),
           ("overflow_init.onnx",
            model(inits=[tensor("W", [BIG, 8], b""), b])),
           ("overflow_value_info.onnx", model(value_info=[
               helper.make_tensor_value_info("h", TensorProto.FLOAT,
                                             [BIG, 8])])),
           ("huge_dim.onnx", model(inits=[tensor("W", [BIG], b""), b])),
           ("dangling.onnx", model(nodes=[
               helper.make_node("MatMul", ["X", "W"], ["h"], name="mm"),
               helper.make_node("Add", ["h", "ghost"], ["a"], name="add"),
               nodes[2]])),
           ("unproduced_output.onnx", model(outputs=[
               helper.make_tensor_value_info("Y", TensorProto.FLOAT,
                                             ["N", 3]),
               helper.make_tensor_value_info("Z", TensorProto.FLOAT,
                                             ["N", 3])])),
           ("duplicate.onnx", model(nodes=[
               helper.make_node("MatMul", ["X", "W"], ["x"], name="mm"),
               helper.make_node("Relu", ["X"], ["x"], name="relu0"),
               helper.make_node("Add", ["x", "B"], ["a"], name="add"),
               nodes[2]])),
           ("cycle.onnx", model(nodes=[
               helper.make_node("Add", ["X", "q"], ["p"], name="A"),
               helper.make_node("Relu", ["p"], ["q"], name="B"),
               helper.make_node("MatMul", ["q", "W"], ["h"], name="mm"),
               nodes[1], nodes[2]])),
           ("ext_escape.onnx", external("W", "../escape.bin")),
           ("ext_absolute.onnx", external("W", "/etc/passwd")),
           ("ext_missing.onnx", external("W", "ext_missing.bin")),
           ("ext_short.onnx", external("W", "ext_short.bin")),
           ("ext_short.bin", w.raw_data[:20])]
    # Seeds 1-6 change 6 bytes (mostly unparsable), 7-14 one byte (mostly
    # still a model): both outcomes get exercised.
    for seed in range(1, 15):
        out.append(("flipped_%d.onnx" % seed,
                    flipped(good, seed, 6 if seed <= 6 else 1)))
    return out


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "broken")
    os.makedirs(folder, exist_ok=True)
    for name, data in cases():
        if isinstance(data, onnx.ModelProto):
            data = data.SerializeToString()
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    print("wrote %d files to %s" % (len(cases()), folder))


if __name__ == "__main__":
    main()
