"""hostile.py - regression tests for what fuzzing found (issue 11).

One group per finding, each built from a reproducer written here (the
inputs are generated at run time, in a scratch folder):
  1  thousands of nested If bodies: refused before protobuf-c recurses
  2  FIFOs named by a model's external data, a pb: tensor, a data spec,
     a run configuration, or given as the model: refused at once
  3  20,000 nodes sharing one name: named in linear time, all unique
  4  an attribute with a value and ref_attr_name: written back whole
  5  npy labels claiming 2^62 entries: a clear error, no UB
  6  /dev/zero and a 3 GiB (sparse) file as the model: refused unread
  7  a gzip IDX file declaring 2^31-1 images: "truncated", and the peak
     memory stays near the inflated data (not 4x it)
  8  output paths of a run configuration found beside the model or in
     the current folder must stay in its folder
  9  libxml2 silent on a config in a bad encoding; NaN/Inf examples
     refused with their index; a diverging loss is an error with no
     output; pb: external data "leaves the tensor file's folder"
Every failure must be one stderr line, the right exit status, no crash
or sanitizer report, and no file left behind.
"""

import gzip
import os
import resource
import shutil
import struct
import subprocess
import sys
import time

import numpy as np

import nptest
from nptest import Tap

SAN = bool(nptest.env("NEPENC_SANITIZERS"))
# --- protobuf wire format, by hand (no recursion limits of python's) ---------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def fld(num, payload):
    """A length-delimited field."""
    return varint(num << 3 | 2) + varint(len(payload)) + payload


def fint(num, v):
    return varint(num << 3) + varint(v)


def fstr(num, s):
    return fld(num, s.encode())


def model_bytes(graph):
    """ModelProto: ir_version 7, opset 13, graph."""
    return fint(1, 7) + fld(8, fint(2, 13)) + fld(7, graph)


def nested_if(depth):
    """A graph whose one If node's then_branch holds an If node ... DEPTH
    levels down."""
    g = fstr(2, "g0")
    for k in range(depth):
        attr = fstr(1, "then_branch") + fint(20, 5) + fld(6, g)
        node = fstr(1, "c") + fstr(2, "y%d" % k) + fstr(4, "If") + fld(5, attr)
        g = fld(1, node) + fstr(2, "g%d" % (k + 1))
    return model_bytes(g)


def nested_type(depth):
    """A graph input whose type is a sequence of a sequence of ... DEPTH
    levels."""
    t = fld(1, fint(1, 1))                        # tensor_type float
    for _ in range(depth):
        t = fld(4, fld(1, t))                     # sequence_type.elem_type
    vi = fstr(1, "X") + fld(2, t)
    return model_bytes(fld(11, vi) + fstr(2, "g"))


# --- running nepenc ----------------------------------------------------------

def one_error(tap, label, res, want, status=1, name=None, folder=None,
              before=None):
    """RES = (rc, out, err) failed with one line containing each of WANT,
    exit STATUS, prefixed by "nepenc: NAME" if given; FOLDER holds the
    same files as BEFORE (nothing left behind)."""
    rc, _, err = res
    why = nptest.crashed(rc, err)
    if why:
        return tap.ok(False, "%s: no crash" % label, why + "\n" + err)
    lines = err.splitlines()
    problems = []
    if rc != status:
        problems.append("exit %s, want %d" % (rc, status))
    if len(lines) != 1:
        problems.append("%d stderr lines, want 1" % len(lines))
    if name and (not lines or not lines[0].startswith("nepenc: %s" % name)):
        problems.append("line does not start with 'nepenc: %s'" % name)
    for w in (want,) if isinstance(want, str) else want:
        if lines and w not in lines[0]:
            problems.append("line lacks '%s'" % w)
    if folder is not None and before is not None:
        now = sorted(os.listdir(folder))
        if now != before:
            problems.append("files changed: %s -> %s" % (before, now))
    return tap.ok(not problems, "%s: exit %d, one line '%s'" % (
        label, status, want if isinstance(want, str) else "...".join(want)),
        "; ".join(problems) + "\nstderr: " + err.strip())


def run(args, timeout=None, cwd=None):
    return nptest.run_nepenc(args, timeout=timeout, cwd=cwd)


def good_model():
    return os.path.join(nptest.srcdir(), "tests", "broken", "good.onnx")


def write_npy_data(folder, n=240, seed=0):
    r = np.random.default_rng(seed)
    np.save(os.path.join(folder, "x.npy"),
            r.standard_normal((n, 4)).astype(np.float32))
    np.save(os.path.join(folder, "y.npy"), r.integers(0, 3, n).astype(np.int64))


def npy_header(descr, shape):
    d = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else ""))
    d += " " * (63 - (len(d) + 10) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d.encode()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# --- the findings ------------------------------------------------------------

def finding1(tap, tmp):
    path = os.path.join(tmp, "deep_if.onnx")
    write(path, nested_if(3000))
    before = sorted(os.listdir(tmp))
    one_error(tap, "1: 3000 nested If bodies",
              run([path, "-o", os.path.join(tmp, "out.onnx"), "--passes",
                   "none"]),
              "graphs nested deeper than 64", name=path, folder=tmp,
              before=before)
    path = os.path.join(tmp, "deep_type.onnx")
    write(path, nested_type(5000))
    one_error(tap, "1: a type nested 5000 deep", run(["inspect", path]),
              "protobuf messages nested deeper than 256", name=path)
    # 60 levels pass the pre-scan: the error is about the graph.
    path = os.path.join(tmp, "if60.onnx")
    write(path, nested_if(60))
    rc, _, err = run(["inspect", path])
    tap.ok(rc == 1 and "nested" not in err and "no producer" in err and
           not nptest.crashed(rc, err), "1: 60 nested If bodies get past the "
           "pre-scan", err.strip())
    for f in ("deep_if.onnx", "deep_type.onnx", "if60.onnx"):
        os.remove(os.path.join(tmp, f))


def ext_model(location):
    """good.onnx with W stored externally at LOCATION (python onnx)."""
    import onnx
    from onnx import TensorProto
    m = onnx.load(good_model())
    w = [t for t in m.graph.initializer if t.name == "W"][0]
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "48")):
        e = w.external_data.add()
        e.key, e.value = k, v
    return m.SerializeToString()


def finding2(tap, tmp):
    d = os.path.join(tmp, "fifo")
    os.makedirs(d)
    fifo = os.path.join(d, "w.bin")
    os.mkfifo(fifo)
    model = os.path.join(d, "m.onnx")
    write(model, ext_model("w.bin"))
    t = 60
    one_error(tap, "2: external data naming a FIFO",
              run(["inspect", model], timeout=t),
              ("external data 'w.bin'", "not a regular file (a FIFO)"),
              name=model)
    # pb: a TensorProto whose external data is that FIFO.
    import onnx
    from onnx import numpy_helper, TensorProto
    x = numpy_helper.from_array(np.zeros((2, 4), np.float32), "X")
    x.ClearField("raw_data")
    x.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "w.bin"), ("offset", "0"), ("length", "32")):
        e = x.external_data.add()
        e.key, e.value = k, v
    write(os.path.join(d, "input_0.pb"), x.SerializeToString())
    one_error(tap, "2: pb: tensor with external data naming a FIFO",
              run(["eval", good_model(), "--data", "pb:" + d], timeout=t),
              "not a regular file (a FIFO)")
    os.remove(os.path.join(d, "input_0.pb"))
    one_error(tap, "2: the model is a FIFO", run(["inspect", fifo], timeout=t),
              "cannot read: not a regular file (a FIFO)", name=fifo)
    one_error(tap, "2: idx: images are a FIFO",
              run(["eval", good_model(), "--data", "idx:" + fifo], timeout=t),
              "cannot open: not a regular file (a FIFO)", name=fifo)
    one_error(tap, "2: npy: examples are a FIFO",
              run(["eval", good_model(), "--data", "npy:" + fifo], timeout=t),
              "cannot open: not a regular file (a FIFO)", name=fifo)
    os.makedirs(os.path.join(d, "cifar"))
    os.mkfifo(os.path.join(d, "cifar", "test_batch.bin"))
    rc, _, err = run(["eval", good_model(), "--data",
                      "cifar10:" + os.path.join(d, "cifar")], timeout=t)
    tap.ok(rc == 1 and len(err.splitlines()) == 1 and not nptest.crashed(rc, err),
           "2: cifar10: a FIFO batch is not read", err.strip())
    # A run configuration found beside the model, a FIFO.
    shutil.copy(good_model(), os.path.join(d, "g.onnx"))
    os.mkfifo(os.path.join(d, "g.nepenc.xml"))
    one_error(tap, "2: MODEL.nepenc.xml is a FIFO",
              run(["eval", os.path.join(d, "g.onnx")], timeout=t),
              "cannot open the run configuration: not a regular file (a FIFO)",
              status=2)
    shutil.rmtree(d)


def finding3(tap, tmp):
    import onnx
    from onnx import helper, TensorProto
    n = 20000
    nodes = [helper.make_node("Relu", ["X" if i == 0 else "t%d" % (i - 1)],
                              ["t%d" % i if i < n - 1 else "Y"], name="same")
             for i in range(n)]
    g = helper.make_graph(
        nodes, "dup",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    path = os.path.join(tmp, "same_name.onnx")
    out = os.path.join(tmp, "same_name_out.onnx")
    onnx.save(m, path)
    t0 = time.monotonic()
    rc, _, err = run([path, "-o", out, "--passes", "none"])
    dt = time.monotonic() - t0
    limit = 60 if SAN else 15      # quadratic naming took 80 s
    tap.ok(rc == 0 and not nptest.crashed(rc, err) and dt < limit,
           "3: 20,000 nodes named alike load in %.1f s (< %d s)" % (dt, limit),
           "exit %s, %.1f s, stderr %s" % (rc, dt, err.strip()))
    if rc == 0:
        names = [x.name for x in onnx.load(out).graph.node]
        tap.ok(len(set(names)) == n and names[0] == "same" and
               names[1] == "same_1" and names[-1] == "same_%d" % (n - 1),
               "3: the names are unique: same, same_1, ... same_%d" % (n - 1),
               "%d unique; first %s, last %s" % (len(set(names)), names[:3],
                                                 names[-1]))
    else:
        tap.skip("3: the names are unique", "the run failed")
    # Generated names that collide with given ones still come out unique.
    nodes = [helper.make_node("Relu", ["X"], ["a"], name="r"),
             helper.make_node("Relu", ["a"], ["b"], name="r"),
             helper.make_node("Relu", ["b"], ["c"], name="r_1"),
             helper.make_node("Relu", ["c"], ["Y"], name="r")]
    m.graph.ClearField("node")
    m.graph.node.extend(nodes)
    onnx.save(m, path)
    rc, _, err = run([path, "-o", out, "--passes", "none"])
    names = [x.name for x in onnx.load(out).graph.node] if rc == 0 else []
    tap.ok(names == ["r", "r_2", "r_1", "r_3"],
           "3: duplicates skip given names (r, r_2, r_1, r_3)",
           "exit %s, names %s, stderr %s" % (rc, names, err.strip()))
    os.remove(path)
    if os.path.exists(out):
        os.remove(out)


def finding4(tap, tmp):
    import onnx
    from onnx import helper, numpy_helper, TensorProto
    c = helper.make_node("Constant", [], ["k"], name="const")
    a = c.attribute.add()
    a.name = "value"
    a.type = onnx.AttributeProto.TENSOR
    a.t.CopyFrom(numpy_helper.from_array(np.ones(3, np.float32)))
    a.ref_attr_name = "v"
    lr = helper.make_node("LeakyRelu", ["X"], ["l"], name="lr", alpha=0.25)
    lr.attribute[0].ref_attr_name = "alpha"
    bare = helper.make_node("LeakyRelu", ["l"], ["m"], name="bare")
    b = bare.attribute.add()
    b.name = "alpha"
    b.type = onnx.AttributeProto.FLOAT
    b.ref_attr_name = "alpha"
    add = helper.make_node("Add", ["m", "k"], ["Y"], name="add")
    g = helper.make_graph(
        [c, lr, bare, add], "ref",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    path = os.path.join(tmp, "ref_attr.onnx")
    out = os.path.join(tmp, "ref_attr_out.onnx")
    onnx.save(m, path)
    rc, _, err = run([path, "-o", out, "--passes", "none"])
    tap.ok(rc == 0 and not nptest.crashed(rc, err), "4: --passes none writes it",
           err.strip())
    rc2, _, err2 = run(["inspect", out]) if rc == 0 else (None, "", "")
    tap.ok(rc2 == 0, "4: nepenc reads its own output back", err2.strip())
    if rc == 0:
        got = {n.name: n for n in onnx.load(out).graph.node}
        va = got["const"].attribute[0]
        al = got["lr"].attribute[0]
        ba = got["bare"].attribute[0]
        ok = (va.ref_attr_name == "v" and va.HasField("t") and
              list(numpy_helper.to_array(va.t)) == [1, 1, 1] and
              al.ref_attr_name == "alpha" and al.HasField("f") and
              al.f == 0.25 and ba.ref_attr_name == "alpha" and
              not ba.HasField("f"))
        tap.ok(ok, "4: value and ref_attr_name both kept; a bare reference "
               "stays bare", "%s\n%s\n%s" % (va, al, ba))
    else:
        tap.skip("4: fields kept", "the run failed")
    # Found by fuzz_model: a reference name of one NUL byte is empty in C;
    # the loader took it as no reference, the emitter as one, and dropped
    # the value.
    a.ref_attr_name = "\x00"
    lr.attribute[0].ref_attr_name = ""
    g2 = helper.make_graph(
        [c, lr, add_k(helper)], "nul_ref",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 3])])
    m2 = helper.make_model(g2, opset_imports=[helper.make_opsetid("", 13)])
    m2.ir_version = 7
    onnx.save(m2, path)
    rc, _, err = run([path, "-o", out, "--passes", "none"])
    rc2, _, err2 = run(["inspect", out]) if rc == 0 else (None, "", err)
    tap.ok(rc == 0 and rc2 == 0, "4: a reference name of one NUL byte: "
           "written back with its value, read back", (err + err2).strip())
    for f in (path, out):
        if os.path.exists(f):
            os.remove(f)


def add_k(helper):
    return helper.make_node("Add", ["l", "k"], ["Y"], name="add")


def finding5(tap, tmp):
    big = 1 << 62
    x = os.path.join(tmp, "x_huge.npy")
    y = os.path.join(tmp, "y_huge.npy")
    # gzip: the file size cannot bound the count, so --limit 1 reads on.
    write(x, gzip.compress(npy_header("|u1", (big, 1)) + bytes(64)))
    write(y, npy_header("<i8", (big,)) + bytes(64))
    one_error(tap, "5: npy labels claiming 2^62 entries",
              run(["eval", good_model(), "--data", "npy:%s,%s" % (x, y),
                   "--limit", "1"]),
              "npy labels: 4611686018427387904 of '<i8' are too many",
              name=y)
    os.remove(x)
    os.remove(y)


def finding6(tap, tmp):
    t0 = time.monotonic()
    one_error(tap, "6: inspect /dev/zero", run(["inspect", "/dev/zero"],
                                               timeout=60),
              "cannot read: not a regular file (a device)", name="/dev/zero")
    path = os.path.join(tmp, "sparse3g.onnx")
    with open(path, "wb") as f:
        f.truncate(3 << 30)
    one_error(tap, "6: a 3 GiB model file",
              run(["inspect", path], timeout=60),
              "larger than 2 GiB", name=path)
    os.remove(path)
    dt = time.monotonic() - t0
    tap.ok(dt < 30, "6: both refused without reading (%.1f s)" % dt)


def peak_rss_kb(args):
    """Run nepenc ARGS in a fresh python (so RUSAGE_CHILDREN is nepenc's
    alone); (rc, stderr, peak RSS in KiB)."""
    prog = nptest.env("NEPENC", os.path.join(nptest.env("top_builddir", "."),
                                             "nepenc"))
    code = ("import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
            "sys.stderr.write(p.stderr.decode('utf-8', 'replace'))\n"
            "print(p.returncode, resource.getrusage("
            "resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    p = subprocess.run([sys.executable, "-c", code, os.path.abspath(prog)] +
                       args, capture_output=True, timeout=600,
                       env=dict(os.environ, LC_ALL="C"))
    rc, kb = p.stdout.decode().split()
    return int(rc), p.stderr.decode("utf-8", "replace"), int(kb)


def finding7(tap, tmp):
    mb = 48
    images = os.path.join(tmp, "lying-images.gz")
    hdr = struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">III", 2**31 - 1,
                                                         28, 28)
    write(images, gzip.compress(hdr + bytes(mb << 20), 9))
    rc, err, kb = peak_rss_kb(["eval", good_model(), "--data", "idx:" + images])
    one_error(tap, "7: gzip IDX declaring 2^31-1 images", (rc, "", err),
              ("truncated IDX file: header says 2147483647 images of 28x28",
               "gzip data ends after"), name=images)
    # Before: the examples were floats as they arrived, 4x the data.
    base_rc, _, base_kb = peak_rss_kb(["inspect", good_model()])
    grew = (kb - base_kb) / 1024.0
    if SAN:
        tap.skip("7: peak memory near the data", "AddressSanitizer's "
                 "shadow memory and quarantine distort the RSS")
    else:
        tap.ok(base_rc == 0 and grew < 2.2 * mb,
               "7: peak memory %.0f MB above a bare run for %d MB of data "
               "(< %.0f)" % (grew, mb, 2.2 * mb))
    os.remove(images)


def finding8(tap, tmp):
    d = os.path.join(tmp, "conf8")
    os.makedirs(d)
    write_npy_data(d)
    model = os.path.join(d, "m.onnx")
    shutil.copy(good_model(), model)
    elsewhere = os.path.join(tmp, "elsewhere")
    os.makedirs(elsewhere)
    fast = ("<max-iter>1</max-iter><epochs>0</epochs><threads>1</threads>"
            "<quiet>true</quiet><data>npy:x.npy,y.npy</data>")
    cases = [("output", os.path.join(elsewhere, "o.onnx"), []),
             ("report", os.path.join(elsewhere, "r.xml"), ["-o", "o.onnx"]),
             ("plot", "../elsewhere/p.svg", ["-o", "o.onnx"]),
             ("depfile", "sub/../../elsewhere/o.d", ["-o", "o.onnx"])]
    for name, value, extra in cases:
        conf = os.path.join(d, "m.nepenc.xml")
        write(conf, "<nepenc>%s<%s>%s</%s></nepenc>" % (fast, name, value,
                                                          name))
        before = sorted(os.listdir(d))
        one_error(tap, "8: <%s>%s</%s> beside the model" % (name, value, name),
                  run([model] + extra, cwd=d),
                  ("<%s>" % name, "leaves the folder of this run configuration",
                   "--config"), status=2, name=conf, folder=d, before=before)
        tap.ok(os.listdir(elsewhere) == [], "8: nothing written outside",
               str(os.listdir(elsewhere)))
        os.remove(conf)
    # ./nepenc.xml is found too.
    write(os.path.join(d, "nepenc.xml"), "<nepenc>%s<output>%s</output>"
          "</nepenc>" % (fast, os.path.join(elsewhere, "o.onnx")))
    before = sorted(os.listdir(d))
    one_error(tap, "8: ./nepenc.xml with an absolute <output>",
              run(["m.onnx"], cwd=d), "leaves the folder", status=2,
              folder=d, before=before)
    # Named by --config, or overridden on the command line: allowed.
    rc, _, err = run(["m.onnx", "--config", "nepenc.xml"], cwd=d)
    tap.ok(rc == 0 and os.listdir(elsewhere) == ["o.onnx"],
           "8: the same file given by --config may write elsewhere",
           "exit %s, %s" % (rc, err.strip()))
    os.remove(os.path.join(elsewhere, "o.onnx"))
    rc, _, err = run(["m.onnx", "-o", "mine.onnx"], cwd=d)
    tap.ok(rc == 0 and os.path.exists(os.path.join(d, "mine.onnx")) and
           os.listdir(elsewhere) == [],
           "8: -o on the command line wins over the file's <output>",
           "exit %s, %s" % (rc, err.strip()))
    os.makedirs(os.path.join(d, "sub"))
    write(os.path.join(d, "nepenc.xml"), "<nepenc>%s<output>sub/../sub/in.onnx"
          "</output></nepenc>" % fast)
    rc, _, err = run(["m.onnx"], cwd=d)
    tap.ok(rc == 0 and os.path.exists(os.path.join(d, "sub", "in.onnx")),
           "8: a relative <output> inside the folder is fine",
           "exit %s, %s" % (rc, err.strip()))
    shutil.rmtree(d)
    shutil.rmtree(elsewhere)


def finding9(tap, tmp):
    d = os.path.join(tmp, "nine")
    os.makedirs(d)
    write_npy_data(d)
    conf = os.path.join(d, "bad.xml")
    write(conf, b'<?xml version="1.0" encoding="Shift_JIS"?><nepenc><zeta>'
          b'\x81\x00\xff\xfe</zeta></nepenc>')
    one_error(tap, "9: a config in a bad encoding: libxml2 stays quiet",
              run(["eval", good_model(), "--config", conf]),
              "not well-formed XML: input conversion failed", status=2,
              name=conf)
    r = np.random.default_rng(1)
    for what, val, idx, word in (("NaN", np.nan, 5, "a NaN"),
                                 ("Inf", np.inf, 7, "an infinity")):
        x = r.standard_normal((40, 4)).astype(np.float32)
        x[idx, 2] = val
        xp = os.path.join(d, "x%s.npy" % what)
        np.save(xp, x)
        one_error(tap, "9: npy examples with %s" % what,
                  run(["eval", good_model(), "--data",
                       "npy:%s,%s" % (xp, os.path.join(d, "y.npy"))]),
                  "example %d has %s" % (idx, word), name=xp)
    from onnx import numpy_helper
    x = r.standard_normal((6, 4)).astype(np.float32)
    x[3, 0] = -np.inf
    pbd = os.path.join(d, "pb")
    os.makedirs(pbd)
    write(os.path.join(pbd, "input_0.pb"),
          numpy_helper.from_array(x, "X").SerializeToString())
    one_error(tap, "9: pb: examples with -Inf",
              run(["eval", good_model(), "--data", "pb:" + pbd]),
              "example 3 has an infinity")
    # A diverging run: no output, one line.
    out = os.path.join(d, "ft.onnx")
    before = sorted(os.listdir(d))
    one_error(tap, "9: fine-tuning whose loss becomes NaN",
              run(["finetune", good_model(), "-o", out, "--data",
                   "npy:%s,%s" % (os.path.join(d, "x.npy"),
                                  os.path.join(d, "y.npy")),
                   "--lr", "1e38", "--epochs", "2", "-q", "--threads", "1"]),
              ("fine-tuning diverged: the loss is", "try a smaller --lr"),
              folder=d, before=before)
    before = sorted(os.listdir(d))
    one_error(tap, "9: NEPENTHE fine-tuning whose loss becomes NaN",
              run([good_model(), "-o", out, "--data",
                   "npy:%s,%s" % (os.path.join(d, "x.npy"),
                                  os.path.join(d, "y.npy")),
                   "--lr", "1e38", "--epochs", "2", "--max-iter", "1", "-q",
                   "--threads", "1"]),
              ("iteration 1: fine-tuning diverged",), folder=d, before=before)
    # pb: external data that leaves the folder: not "the model's".
    from onnx import TensorProto
    t = numpy_helper.from_array(np.zeros((2, 4), np.float32), "X")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", "../x.npy"
    write(os.path.join(pbd, "input_0.pb"), t.SerializeToString())
    one_error(tap, "9: pb: external data outside the folder",
              run(["eval", good_model(), "--data", "pb:" + pbd]),
              "external data path '../x.npy' leaves the tensor file's folder")
    shutil.rmtree(d)


def campaign_findings(tap, tmp):
    """Found by the 1M-execution campaign (docs/reliability.md): an int32
    IDX label of 2^31-1 made the class count overflow (UBSan)."""
    images = os.path.join(tmp, "img.idx")
    labels = os.path.join(tmp, "lab.idx")
    write(images, struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 2, 2) + bytes(8))
    write(labels, struct.pack(">BBBBI", 0, 0, 0x0C, 1, 2) +
          struct.pack(">ii", 1, 2**31 - 1))
    one_error(tap, "campaign: an IDX label of 2^31-1",
              run(["eval", good_model(), "--data",
                   "idx:%s,%s" % (images, labels)]),
              "label 2147483647 at example 1 is not a class index",
              name=labels)
    os.remove(images)
    os.remove(labels)


def main():
    tap = Tap()
    try:
        import onnx  # noqa: F401
    except ImportError:
        tap.skip_all("python3 cannot import onnx (Debian: python3-onnx)")
        return 0
    tmp = nptest.work_dir("hostile")
    for f in (finding1, finding2, finding3, finding4, finding5, finding6,
              finding7, finding8, finding9, campaign_findings):
        f(tap, tmp)
    return nptest.finish(tap, tmp)


if __name__ == "__main__":
    nptest.main_guard(main)
