"""iofault.py - writing to a full file system (issue 11).

A 64 KiB tmpfs (mount needs root; without it the test skips, saying why)
holds an existing output file.  nepenc then writes a model bigger than
the space left over it (--passes none, with and without --external-data)
and a report: every run must fail with one line naming the file and
"No space left on device", exit 1, leave no temporary file, and leave
the original output byte for byte as it was.
"""

import os
import shutil
import subprocess

import numpy as np

import nptest
from nptest import Tap


def big_model(path):
    """good.onnx's graph with a 256 KiB weight: more than the tmpfs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(
        np.arange(256 * 256, dtype=np.float32).reshape(256, 256) / 7, "W")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["h"], name="mm"),
         helper.make_node("Relu", ["h"], ["Y"], name="relu")], "big",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 256])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 256])],
        initializer=[w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    onnx.save(m, path)


def main():
    tap = Tap()
    try:
        import onnx  # noqa: F401
    except ImportError:
        tap.skip_all("python3 cannot import onnx (Debian: python3-onnx)")
        return 0
    tmp = nptest.work_dir("iofault")
    mnt = os.path.join(tmp, "full")
    os.makedirs(mnt)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt],
                       capture_output=True)
    if p.returncode != 0:
        tap.skip_all("cannot mount a 64 KiB tmpfs (needs root): %s" %
                     p.stderr.decode("utf-8", "replace").strip())
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    try:
        model = os.path.join(tmp, "big.onnx")
        big_model(model)
        out = os.path.join(mnt, "out.onnx")
        original = b"the previous output, to be kept as it is\n" * 100
        with open(out, "wb") as f:
            f.write(original)
        cases = [("model", [model, "-o", out, "--passes", "none"], out),
                 ("model + external data", [model, "-o", out, "--passes",
                                            "none", "--external-data"], out)]
        for label, args, target in cases:
            rc, _, err = nptest.run_nepenc(args)
            lines = err.splitlines()
            left = sorted(os.listdir(mnt))
            same = open(out, "rb").read() == original
            ok = (rc == 1 and len(lines) == 1 and
                  "No space left on device" in lines[0] and
                  lines[0].startswith("nepenc: ") and left == ["out.onnx"] and
                  same)
            tap.ok(ok, "%s on a full file system: exit 1, one line, no "
                   "temporary file, the old output untouched" % label,
                   "exit %s, files %s, original kept %s, stderr: %s" % (
                       rc, left, same, err.strip()))
        # A report that does not fit: the model may be written (it goes
        # first, elsewhere), the report must not be left half-written.
        r = np.random.default_rng(0)
        d = os.path.join(tmp, "data")
        os.makedirs(d)
        np.save(os.path.join(d, "x.npy"), r.standard_normal((48, 4)).astype(np.float32))
        np.save(os.path.join(d, "y.npy"), r.integers(0, 3, 48).astype(np.int64))
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as f:
            try:
                f.write(b"\0" * (64 << 10))
            except OSError:
                pass
        report = os.path.join(mnt, "report.xml")
        good = os.path.join(nptest.srcdir(), "tests", "broken", "good.onnx")
        rc, _, err = nptest.run_nepenc(
            [good, "-o", os.path.join(tmp, "o.onnx"), "--data",
             "npy:%s,%s" % (os.path.join(d, "x.npy"), os.path.join(d, "y.npy")),
             "--max-iter", "1", "--epochs", "0", "--threads", "1", "-q",
             "--report", report])
        left = sorted(os.listdir(mnt))
        tap.ok(rc == 1 and len(err.splitlines()) == 1 and
               "report.xml" in err and left == ["filler", "out.onnx"] and
               open(out, "rb").read() == original,
               "a report on a full file system: exit 1, one line, nothing "
               "half-written", "exit %s, files %s, stderr: %s" % (
                   rc, left, err.strip()))
    finally:
        subprocess.run(["umount", mnt], capture_output=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return tap.done()


if __name__ == "__main__":
    nptest.main_guard(main)
