"""nptest.py - shared helpers for nepenc's Python script tests.

TAP output, the nepenc runner, and the client of the onnxruntime-node worker
(tests/lib/ort_run.js).  Run by /usr/bin/python3 (Debian's, which has onnx).
"""

import base64
import json
import os
import select
import subprocess
import sys
import tempfile

import numpy as np


def env(name, default=None):
    """An environment variable set by TESTS_ENVIRONMENT, or a sane default
    when the script is run by hand from the source tree."""
    v = os.environ.get(name)
    return v if v else default


def srcdir():
    return env("top_srcdir",
               os.path.dirname(os.path.dirname(os.path.dirname(
                   os.path.abspath(__file__)))))


class Tap:
    """Minimal TAP producer; the plan is printed first or last."""

    def __init__(self):
        self.n = 0
        self.failed = 0
        self.skipped = 0

    @staticmethod
    def plan(n):
        print("1..%d" % n, flush=True)

    @staticmethod
    def skip_all(why):
        print("1..0 # SKIP %s" % one_line(why), flush=True)

    def ok(self, cond, desc, diag=None):
        self.n += 1
        print("%s %d - %s" % ("ok" if cond else "not ok", self.n,
                              one_line(desc)), flush=True)
        if not cond:
            self.failed += 1
            if diag:
                self.comment(diag)
        return cond

    def skip(self, desc, why):
        self.n += 1
        self.skipped += 1
        print("ok %d - %s # SKIP %s" % (self.n, one_line(desc), one_line(why)),
              flush=True)

    @staticmethod
    def comment(text):
        for line in str(text).splitlines() or [""]:
            print("# " + line, flush=True)

    def done(self):
        """Print the trailing plan.  Exit status 0 even after a "not ok":
        the TAP driver counts those, and a non-zero status would add a
        second, ERROR result for the same failure."""
        self.plan(self.n)
        return 0


def one_line(text):
    """TAP descriptions must stay on one line and must not contain '#'
    (that would start a directive)."""
    s = " ".join(str(text).split())
    return s.replace("#", "<hash>")


def run_nepenc(args, timeout=None, cwd=None, extra_env=None):
    """Run $NEPENC with ARGS (in folder CWD if given, with the variables of
    EXTRA_ENV added to the environment); returns (returncode, stdout, stderr) as
    text.  A timeout is reported as returncode None."""
    prog = env("NEPENC", os.path.join(env("top_builddir", "."), "nepenc"))
    # Absolute, so that CWD does not change which program runs.
    cmd = [os.path.abspath(prog) if os.sep in prog else prog]
    if timeout is None:
        # Sanitizer builds run several times slower.
        timeout = 600 if env("NEPENC_SANITIZERS") else 120
    try:
        # C locale: the strerror() texts the tests look for are English.
        p = subprocess.run(cmd + list(args), capture_output=True, cwd=cwd,
                           timeout=timeout,
                           env=dict(os.environ, LC_ALL="C", **(extra_env or {})))
    except subprocess.TimeoutExpired:
        return None, "", "timeout after %ds" % timeout
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


def work_dir(tag):
    """A scratch folder under the build tree's tests/ (or /tmp)."""
    base = os.path.join(env("top_builddir", "."), "tests")
    if not os.path.isdir(base):
        base = None
    return tempfile.mkdtemp(prefix=tag + ".tmp.", dir=base)


# --- tensors for the JS side -------------------------------------------------

# ONNX TensorProto.DataType -> onnxruntime-node type name.
ORT_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16",
             6: "int32", 7: "int64", 8: "string", 9: "bool", 10: "float16",
             11: "float64", 12: "uint32", 13: "uint64"}


def encode_array(name, arr, ort_type):
    """A numpy array as the worker's input form."""
    dims = [int(d) for d in arr.shape]
    if ort_type == "string":
        data = [x.decode("utf-8") if isinstance(x, bytes) else str(x)
                for x in arr.reshape(-1).tolist()]
        return {"name": name, "type": "string", "dims": dims, "data": data}
    if ort_type == "bool":
        arr = arr.astype(np.uint8)
    raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"),
                                           copy=False).tobytes()
    return {"name": name, "type": ort_type, "dims": dims,
            "data": base64.b64encode(raw).decode("ascii")}


def decode_output(o):
    """A worker output as a numpy array (float32/64 etc.), for messages."""
    dtypes = {"float32": "<f4", "float64": "<f8", "int8": "i1", "uint8": "u1",
              "int16": "<i2", "uint16": "<u2", "int32": "<i4",
              "uint32": "<u4", "int64": "<i8", "uint64": "<u8", "bool": "u1",
              "float16": "<f2"}
    if o["type"] not in dtypes:
        return None
    return np.frombuffer(base64.b64decode(o["data"]),
                         dtype=dtypes[o["type"]]).reshape(o["dims"])


class OrtWorker:
    """One node process running ort_run.js; restarted if it dies."""

    def __init__(self, timeout=120, extra_env=None):
        self.timeout = timeout
        self.extra_env = extra_env or {}
        self.proc = None
        self.node = env("NODE", "node")
        self.script = os.path.join(srcdir(), "tests", "lib", "ort_run.js")

    @staticmethod
    def unavailable():
        """Why the worker cannot run at all, or None."""
        node = env("NODE", "node")
        if node in ("no", ""):
            return "node not found by configure"
        np_path = env("NODE_PATH", "")
        if not os.path.isdir(os.path.join(np_path, "onnxruntime-node")):
            return "onnxruntime-node not installed in NODE_PATH '%s'" % np_path
        return None

    def probe(self):
        """Why ORT cannot run even the corpus's tiny good model, or None:
        a broken onnxruntime-node must skip the test, loudly, instead of
        skipping every model one by one."""
        good = os.path.join(srcdir(), "tests", "broken", "good.onnx")
        x = encode_array("X", np.ones((2, 4), np.float32), "float32")
        ans = self.run(good, [x])
        if ans["ok"]:
            return None
        return "onnxruntime-node does not work (%s): %s" % (ans["stage"],
                                                           ans["error"])

    @classmethod
    def maybe(cls, timeout=120):
        """(a working worker, None), or (None, why not): for tests whose
        other checks run without onnxruntime and skip only its points."""
        why = cls.unavailable()
        if why:
            return None, why
        worker = cls(timeout=timeout)
        why = worker.probe()
        if why:
            worker.close()
            return None, why
        return worker, None

    def _start(self):
        e = dict(os.environ, **self.extra_env)
        self.proc = subprocess.Popen([self.node, self.script],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=e)
        self.buf = b""

    def close(self):
        if self.proc:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def _kill(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def _readline(self):
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            r, _, _ = select.select([fd], [], [], self.timeout)
            if not r:
                return None, "timeout after %ds" % self.timeout
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None, "node exited (status %s)" % self.proc.poll()
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line, None

    def run(self, model, inputs):
        """Run MODEL on INPUTS (list from encode_array).  Returns the
        worker's answer; a crash or hang of node becomes ok=False, stage
        'crash'."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        job = json.dumps({"model": os.path.abspath(model), "inputs": inputs})
        try:
            self.proc.stdin.write(job.encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            self._kill()
            return {"ok": False, "stage": "crash", "error": "node died"}
        line, err = self._readline()
        if line is None:
            self._kill()
            return {"ok": False, "stage": "crash", "error": err}
        ans = json.loads(line)
        if ans.get("stage") == "init":
            self._kill()
        return ans


def en_us_locale(folder):
    """ORT's StringNormalizer insists on the en_US.UTF-8 locale.  If the
    system lacks it, compile it into FOLDER with localedef (about a second)
    and return {"LOCPATH": ...} for the worker; else {}."""
    try:
        have = subprocess.run(["locale", "-a"], capture_output=True,
                              text=True).stdout.split()
        if any(x.lower().replace("-", "") == "en_us.utf8" for x in have):
            return {}
        loc = os.path.join(folder, "locale")
        os.makedirs(loc, exist_ok=True)
        p = subprocess.run(["localedef", "-i", "en_US", "-f", "UTF-8",
                            os.path.join(loc, "en_US.UTF-8")],
                           capture_output=True)
    except OSError:
        return {}
    return {"LOCPATH": loc} if p.returncode == 0 else {}


def same_outputs(a, b, shape_only=False):
    """Compare two lists of worker outputs.  Returns None when equal, else a
    one-line reason."""
    if len(a) != len(b):
        return "%d outputs vs %d" % (len(a), len(b))
    for x, y in zip(a, b):
        if x["name"] != y["name"]:
            return "output name '%s' vs '%s'" % (x["name"], y["name"])
        if x["type"] != y["type"]:
            return "output '%s': type %s vs %s" % (x["name"], x["type"],
                                                   y["type"])
        if x["dims"] != y["dims"]:
            return "output '%s': dims %s vs %s" % (x["name"], x["dims"],
                                                   y["dims"])
        if shape_only or x["data"] == y["data"]:
            continue
        xa, ya = decode_output(x), decode_output(y)
        if xa is not None and xa.size == ya.size and xa.size:
            # Compare bit patterns, not values: NaN != NaN, -0.0 == 0.0.
            u = "u%d" % xa.dtype.itemsize
            diff = np.flatnonzero(xa.reshape(-1).view(u) !=
                                  ya.reshape(-1).view(u))
            first = int(diff[0]) if diff.size else 0
            return ("output '%s': %d of %d elements differ (first at %d: "
                    "%r vs %r)" % (x["name"], diff.size, xa.size, first,
                                   xa.reshape(-1)[first].item(),
                                   ya.reshape(-1)[first].item()))
        return "output '%s': values differ" % x["name"]
    return None


def check_model(path):
    """onnx.checker with full_check; returns None or the first line of the
    error.  onnx.checker.check_model(PATH, full_check=True) would write the
    shape-inferred model back over PATH (infer_shapes_path's default output
    is its input), so the same checks run here with the inferred model going
    to a scratch file instead: the file under test stays as nepenc wrote
    it."""
    import shutil
    import onnx
    scratch = tempfile.mkdtemp(prefix="nptest-check.")
    try:
        onnx.checker.check_model(path)
        onnx.shape_inference.infer_shapes_path(
            path, os.path.join(scratch, "inferred.onnx"), check_type=True,
            strict_mode=True)
    except Exception as e:  # checker and shape inference raise various types
        return (str(e).strip().splitlines() or [type(e).__name__])[0]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return None


def main_guard(fn):
    """Run FN; an unexpected Python exception becomes a TAP bail-out so the
    driver records an error instead of a silent pass."""
    try:
        sys.exit(fn())
    except SystemExit:
        raise
    except BaseException as e:
        import traceback
        traceback.print_exc()
        print("Bail out! %s: %s" % (type(e).__name__, one_line(e)),
              flush=True)
        sys.exit(1)


# --- Fashion-MNIST and the shared models (end-to-end tests) ------------------

FASHION_MEAN = 0.2860
FASHION_STD = 0.3530
# The preprocessing flags every end-to-end test passes to nepenc.
FASHION_FLAGS = ["--mean", "%.4f" % FASHION_MEAN, "--std", "%.4f" % FASHION_STD]
FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz",
                           "train-labels-idx1-ubyte.gz"),
                 "test": ("t10k-images-idx3-ubyte.gz",
                          "t10k-labels-idx1-ubyte.gz")}


def fashion_paths(split):
    """(images, labels) paths of Fashion-MNIST's SPLIT ('train'/'test')."""
    d = env("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
    return tuple(os.path.join(d, f) for f in FASHION_FILES[split])


def fashion_spec(split, labels=True):
    """The idx: data spec of SPLIT, with or without its labels."""
    images, lab = fashion_paths(split)
    return "idx:" + images + ("," + lab if labels else "")


def shared_model(name):
    """Path of a shared fixture model, e.g. shared_model('mlp4_relu')."""
    return os.path.join(env("NP_SHARED", os.path.join(srcdir(), "..",
                                                      "shared")),
                        "models", name + ".onnx")


def first_missing(paths):
    """The first of PATHS that is not a file, or None."""
    for p in paths:
        if not os.path.isfile(p):
            return p
    return None


def load_idx(path):
    """An IDX file (gzip or raw) as a numpy array of its stored shape."""
    import gzip
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError("%s: not an unsigned-byte IDX file" % path)
    rank = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big")
            for i in range(rank)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * rank).reshape(dims)


def fashion_subset(folder, tag, split, first, count):
    """Write examples [FIRST, FIRST+COUNT) of SPLIT as uint8 X [N,1,28,28]
    and int64 Y .npy files in FOLDER; returns (npy: spec, x, y)."""
    images, labels = fashion_paths(split)
    x = load_idx(images)[first:first + count].reshape(-1, 1, 28, 28)
    y = load_idx(labels)[first:first + count].astype(np.int64)
    xp = os.path.join(folder, tag + "_x.npy")
    yp = os.path.join(folder, tag + "_y.npy")
    np.save(xp, np.ascontiguousarray(x))
    np.save(yp, y)
    return "npy:%s,%s" % (xp, yp), x, y


def fashion_float(x):
    """uint8 pixels preprocessed as nepenc does with FASHION_FLAGS."""
    return ((x.astype(np.float32) * np.float32(1.0 / 255.0) -
             np.float32(FASHION_MEAN)) / np.float32(FASHION_STD))


def ort_top1(worker, model, x, y, batch=500):
    """Top-1 (percent) of MODEL under onnxruntime on uint8 images X with
    labels Y; returns (top1, None) or (None, reason)."""
    import onnx
    m = onnx.load(model, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    name = [i.name for i in m.graph.input if i.name not in inits][0]
    right = 0
    for i in range(0, len(x), batch):
        xb = fashion_float(x[i:i + batch])
        ans = worker.run(model, [encode_array(name, xb, "float32")])
        if not ans["ok"]:
            return None, "ORT %s: %s" % (ans["stage"], ans["error"])
        logits = decode_output(ans["outputs"][0])
        right += int((logits.argmax(axis=1) == y[i:i + batch]).sum())
    return 100.0 * right / len(x), None


def json_doc(text):
    """The one JSON document nepenc printed, or None."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def error_lines(stderr):
    """stderr's non-blank lines."""
    return [ln for ln in stderr.splitlines() if ln.strip()]


def sanitized():
    """True in the ASan/UBSan build (the tests shrink their work there)."""
    return bool(env("NEPENC_SANITIZERS"))


def slow_timeout():
    """Seconds allowed to one nepenc run over all of Fashion-MNIST's test
    set: generous, as CI machines are shared and the sanitizer build is
    several times slower."""
    return 3600 if sanitized() else 900


# --- crashes and scratch folders (broken, hostile, allocfail, iofault) ------

CRASH_MARKS = ("Sanitizer", "runtime error", "Segmentation", "core dumped",
               "Assertion", "LeakSanitizer")


def crashed(rc, err):
    """A reason if RC/ERR look like a crash (or a hang, rc None) rather
    than a clean error, else None."""
    if rc is None:
        return "timed out (blocked?)"
    if rc < 0:
        return "killed by signal %d" % -rc
    for m in CRASH_MARKS:
        if m in err:
            return "'%s' on stderr" % m
    return None


def finish(tap, tmp):
    """The end of a script test: keep the scratch folder TMP when a point
    failed (or NEPENC_KEEP_TMP is set) and say where, else remove it;
    then the trailing plan."""
    import shutil
    if tap.failed or env("NEPENC_KEEP_TMP"):
        tap.comment("scratch folder kept: %s" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return tap.done()
