#!/usr/bin/python3
"""make_seeds.py - regenerate the seed corpora of tests/fuzz/corpus/.

The files are committed; run this only to change them:
    /usr/bin/python3 tests/fuzz/make_seeds.py
Small on purpose: a seed is a starting point, the fuzzer does the rest.
"""

import gzip
import os
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import hostile  # noqa: E402  (wire-format helpers)


def npy(arr):
    import io
    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


def idx(arr, code):
    hdr = struct.pack(">BBBB", 0, 0, code, arr.ndim)
    hdr += b"".join(struct.pack(">I", d) for d in arr.shape)
    return hdr + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def models():
    good = open(os.path.join(HERE, "..", "broken", "good.onnx"), "rb").read()
    out = {"good.onnx": good}
    for name in ("duplicate.onnx", "cycle.onnx", "ext_short.onnx",
                 "overflow_value_info.onnx"):
        out[name] = open(os.path.join(HERE, "..", "broken", name), "rb").read()
    out["if3.onnx"] = hostile.nested_if(3)
    out["seq_type.onnx"] = hostile.nested_type(3)
    # Conv + BN + Relu + Gemm: the ops the passes know, with attributes.
    r = np.random.default_rng(0)
    w = numpy_helper.from_array(r.standard_normal((2, 1, 3, 3)).astype(np.float32), "w")
    s = numpy_helper.from_array(np.ones(2, np.float32), "s")
    b = numpy_helper.from_array(np.zeros(2, np.float32), "b")
    g = numpy_helper.from_array(r.standard_normal((8, 3)).astype(np.float32), "g")
    shape = numpy_helper.from_array(np.array([-1, 8], np.int64), "shape")
    nodes = [helper.make_node("Conv", ["X", "w"], ["c"], name="conv",
                              pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "b", "s"],
                              ["n"], name="bn", epsilon=1e-5),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2]),
             helper.make_node("Reshape", ["p", "shape"], ["f"]),
             helper.make_node("Gemm", ["f", "g"], ["Y"], transB=0)]
    gr = helper.make_graph(
        nodes, "small",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 3])],
        initializer=[w, s, b, g, shape])
    m = helper.make_model(gr, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    out["convnet.onnx"] = m.SerializeToString()
    c = helper.make_node("Constant", [], ["k"], name="const")
    a = c.attribute.add()
    a.name, a.type, a.ref_attr_name = "value", onnx.AttributeProto.TENSOR, "v"
    a.t.CopyFrom(numpy_helper.from_array(np.ones(3, np.float32)))
    gr = helper.make_graph(
        [c, helper.make_node("Add", ["X", "k"], ["Y"])], "ref",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 3])])
    m = helper.make_model(gr, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    out["ref_attr.onnx"] = m.SerializeToString()
    return out


def image_seeds():
    """The preprocessing fixtures' images (tests/fixtures/preprocess): grey,
    RGB, RGBA and palette PNG, grey and RGB JPEG."""
    top = os.path.join(HERE, "..", "fixtures", "preprocess")
    seeds = {}
    for folder in sorted(os.listdir(top)):
        d = os.path.join(top, folder, "x")
        if os.path.isdir(d):
            for f in os.listdir(d):
                with open(os.path.join(d, f), "rb") as fh:
                    seeds[folder + os.path.splitext(f)[1]] = fh.read()
    return seeds


def main():
    sep = b"\n--\n"
    r = np.random.default_rng(1)
    u8 = r.integers(0, 256, (3, 4, 4)).astype(np.uint8)
    lab = np.array([0, 2, 1], np.uint8)
    f4 = r.standard_normal((3, 4)).astype(np.float32)
    tok = np.random.default_rng(2)   # the token seeds' own draws
    corp = {
        "fuzz_model": models(),
        "fuzz_idx": {
            "u8_labels": idx(u8, 8) + sep + idx(lab, 8),
            "u8_gzip": gzip.compress(idx(u8, 8), mtime=0) + sep +
                       gzip.compress(idx(lab, 8), mtime=0),
            "f32": idx(f4.astype(np.dtype(">f4")), 0x0D),
            "i16_4d": idx(r.integers(-9, 9, (2, 1, 2, 2)).astype(np.int16), 0x0B),
        },
        "fuzz_npy": {
            "f4_i8": npy(f4) + sep + npy(np.array([0, 1, 2], np.int64)),
            "u1": npy(u8) + sep + npy(lab.reshape(3, 1)),
            "f8_gzip": gzip.compress(npy(f4.astype(np.float64)), mtime=0),
            # Token ids: unnamed (a single int64 input), and named
            # (npy:ids=X,Y: the last byte's bit 2 asks for it; bytes
            # after the labels are ignored).
            "i8_ids": npy(tok.integers(0, 83, (3, 5)).astype(np.int64)) +
                      sep + npy(lab.astype(np.int64)),
            "i4_named": npy(tok.integers(-2, 83, (3, 5)).astype(np.int32)) +
                        sep + npy(lab.astype(np.int64)) + b"\x02",
        },
        "fuzz_cifar": {
            "two_records": bytes([3]) + bytes(range(256)) * 12 +
                           bytes([9]) + bytes(3072),
        },
        "fuzz_pb": {
            "f32_i64": numpy_helper.from_array(f4, "x").SerializeToString() +
                       sep + numpy_helper.from_array(
                           np.array([0, 1, 2], np.int64), "y").SerializeToString(),
            "u8_scores": numpy_helper.from_array(u8, "x").SerializeToString() +
                         sep + numpy_helper.from_array(
                             r.standard_normal((3, 4)).astype(np.float32),
                             "y").SerializeToString(),
        },
        "fuzz_config": {
            "small.xml": b"<nepenc><data>idx:a.gz,b.gz</data><zeta>0.5</zeta>"
                         b"<nesterov>true</nesterov></nepenc>\n",
            "paths.xml": b'<?xml version="1.0"?>\n<nepenc>\n  <output>o.onnx'
                         b'</output>\n  <report>r.xml</report>\n  <plot>p.svg'
                         b'</plot>\n  <mean>0.5,0.4</mean>\n  <std>0.2,0.1</std>'
                         b'\n  <augment>flip,shift=2</augment>\n  <lr-schedule>'
                         b'step:2:0.5</lr-schedule>\n</nepenc>\n',
            "bad.xml": b"<nepenc><zeta>x</zeta><zeta>1</zeta></nepenc>",
        },
        "fuzz_cli": {
            "compile": b"m.onnx\0-o\0o.onnx\0--zeta\x000.5\0--theta\x000.99\0"
                       b"--data\0idx:a,b\0--augment\0flip,shift=2",
            "eval": b"eval\0m.onnx\0--data\0npy:x.npy,y.npy\0--batch\x0064\0"
                    b"--mean\x000.1,0.2\0--std\x000.3,0.4",
            "deps": b"finetune\0m.onnx\0-o\0o.onnx\0-MD\0-MT\0t\0--data\0pb:d\0"
                    b"--lr-schedule\0cosine",
        },
        "fuzz_spec": {
            "idx": b"idx:train-images.gz,train-labels.gz",
            "npy": b"npy:x.npy,y.npy",
            "cifar": b"cifar10:/nonexistent/cifar",
            "pb": b"pb:/nonexistent/set",
        },
        "fuzz_image": image_seeds(),
    }
    for target, files in corp.items():
        d = os.path.join(HERE, "corpus", target)
        os.makedirs(d, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
    print("wrote %d seeds" % sum(len(v) for v in corp.values()))


if __name__ == "__main__":
    main()
