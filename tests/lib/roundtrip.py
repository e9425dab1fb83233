"""roundtrip.py - `nepenc MODEL -o OUT --passes none` must not change a model.

  roundtrip.py node    every ONNX backend node test model ($ONNX_TESTDATA/node)
  roundtrip.py shared  the fixture models in $NP_SHARED/models, also with
                       --external-data

For each model: nepenc succeeds; onnx.checker (full_check) passes on the
output wherever it passes on the input; onnxruntime (one node process, see
ort_run.js) gives BIT-IDENTICAL outputs on the input and on the output model.
Random ops are compared on output names, types and shapes only.  A model that
ORT cannot load or run even as given is skipped, with ORT's reason.

By hand: ROUNDTRIP_ONLY=REGEX limits the node models; NEPENC_KEEP_TMP=1 keeps
the converted models (they are kept anyway when a check fails).
"""

import concurrent.futures
import glob
import os
import re
import shutil
import sys

import numpy as np
import onnx
from onnx import numpy_helper

import nptest
from nptest import Tap

RANDOM_OPS = {"Bernoulli", "RandomUniform", "RandomUniformLike",
              "RandomNormal", "RandomNormalLike", "Multinomial"}


def all_nodes(graph):
    """Nodes of GRAPH and of every subgraph (If/Loop/Scan bodies)."""
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from all_nodes(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from all_nodes(g)


def random_reason(model):
    """Why MODEL's outputs are random (a one-line reason), or None."""
    nodes = list(all_nodes(model.graph))
    for f in model.functions:
        nodes.extend(f.node)
    for n in nodes:
        if n.op_type in RANDOM_OPS:
            return "random op %s" % n.op_type
        if n.op_type == "Dropout" and len(n.input) >= 3 and n.input[2]:
            return "Dropout with training_mode"
    return None


def input_kind(vi):
    """The ORT type name of graph input VI, or None with a reason."""
    kind = vi.type.WhichOneof("value")
    if kind != "tensor_type":
        return None, "%s input '%s' cannot be fed through the JS API" % (
            (kind or "untyped").replace("_type", ""), vi.name)
    et = vi.type.tensor_type.elem_type
    if et not in nptest.ORT_TYPES:
        return None, "input '%s' of type %s is not supported by the JS API" % (
            vi.name, onnx.TensorProto.DataType.Name(et))
    return nptest.ORT_TYPES[et], None


def load_data_sets(model, folder):
    """The test_data_set_*/input_K.pb of FOLDER as lists of worker inputs.
    Returns (sets, None) or (None, reason to skip)."""
    inits = {t.name for t in model.graph.initializer}
    graph_inputs = [vi for vi in model.graph.input if vi.name not in inits]
    sets = []
    for ds in sorted(glob.glob(os.path.join(folder, "test_data_set_*"))):
        files = sorted(glob.glob(os.path.join(ds, "input_*.pb")),
                       key=lambda p: int(re.findall(r"\d+", p)[-1]))
        if len(files) > len(graph_inputs):
            return None, "%d input files for %d graph inputs" % (
                len(files), len(graph_inputs))
        feeds = []
        for vi, path in zip(graph_inputs, files):
            ort_type, why = input_kind(vi)
            if why:
                return None, why
            t = onnx.TensorProto()
            with open(path, "rb") as f:
                t.ParseFromString(f.read())
            feeds.append(nptest.encode_array(vi.name, numpy_helper.to_array(t),
                                             ort_type))
        sets.append(feeds)
    if not sets:
        return None, "no test_data_set_*"
    return sets, None


class Counts:
    def __init__(self):
        self.models = 0
        self.identical = 0
        self.shape_only = 0
        self.skipped = []        # (name, reason)
        self.checker_in = []     # inputs the checker rejects


def ort_failure(ans, which):
    if ans["stage"] in ("load", "run"):
        return "ORT cannot %s the %s model: %s" % (ans["stage"], which,
                                                   ans["error"])
    return "ORT failed on the %s model (%s): %s" % (which, ans["stage"],
                                                   ans["error"])


def compare_runs(worker, src, out, sets, shape_only):
    """Run SRC and OUT on every data set.  Returns ("skip", why),
    ("fail", why) or ("ok", None)."""
    for i, feeds in enumerate(sets):
        a = worker.run(src, feeds)
        if not a["ok"]:
            return "skip", ort_failure(a, "input")
        b = worker.run(out, feeds)
        if not b["ok"]:
            return "fail", ort_failure(b, "output")
        diff = nptest.same_outputs(a["outputs"], b["outputs"], shape_only)
        if diff:
            return "fail", "data set %d: %s" % (i, diff)
    return "ok", None


def check_one(tap, counts, worker, name, src, out, nep):
    """All checks of one node test model; prints one TAP line."""
    counts.models += 1
    rc, _, err = nep
    if rc != 0 or err:
        # A success says nothing: text on stderr may be a sanitizer report.
        tap.ok(False, "%s: nepenc exit %s%s" % (
            name, rc, ", with stderr output" if err else ""), err.strip())
        return
    in_err = nptest.check_model(src)
    if in_err:
        counts.checker_in.append((name, in_err))
    else:
        out_err = nptest.check_model(out)
        if out_err:
            tap.ok(False, "%s: onnx.checker rejects the output" % name,
                   out_err)
            return
    model = onnx.load(src)
    sets, why = load_data_sets(model, os.path.dirname(src))
    if why:
        counts.skipped.append((name, why))
        tap.skip(name, why)
        return
    rnd = random_reason(model)
    verdict, why = compare_runs(worker, src, out, sets, rnd is not None)
    if verdict == "skip":
        counts.skipped.append((name, why))
        tap.skip(name, why)
    elif verdict == "fail":
        tap.ok(False, "%s: %s" % (name, why))
    elif rnd:
        counts.shape_only += 1
        tap.ok(True, "%s: shape and dtype only (%s)" % (name, rnd))
    else:
        counts.identical += 1
        tap.ok(True, "%s: bit-identical (%d data set%s)" % (
            name, len(sets), "" if len(sets) == 1 else "s"))


def short_reason(why):
    """Group skip reasons for the summary: drop paths, names, numbers and
    ORT's source locations."""
    s = re.sub(r"Load model from \S+ failed:", "", why)
    s = re.sub(r"/onnxruntime_src/\S+ \S+?\(.*?\)(::<lambda\(\)>)? "
               r"(\[with [^\]]*\] )?", "", s)
    s = re.sub(r"'[^']*'", "'.'", s)
    s = re.sub(r"\d+", "N", s)
    return s[:120]


def suite_node():
    tap = Tap()
    why = nptest.OrtWorker.unavailable()
    if why:
        tap.skip_all(why)
        return 0
    root = os.path.join(nptest.env("ONNX_TESTDATA",
                                   "/usr/share/libonnx-testdata/data"), "node")
    models = sorted(glob.glob(os.path.join(root, "*", "model.onnx")))
    only = nptest.env("ROUNDTRIP_ONLY")    # a regex, for debugging by hand
    if only:
        models = [m for m in models if re.search(only, m)]
    if not models:
        tap.skip_all("no ONNX node test models under %s" % root)
        return 0
    tmp = nptest.work_dir("roundtrip-node")
    worker = nptest.OrtWorker(extra_env=nptest.en_us_locale(tmp))
    why = worker.probe()
    if why:
        worker.close()
        shutil.rmtree(tmp, ignore_errors=True)
        tap.skip_all(why)
        return 0
    counts = Counts()

    def convert(src):
        name = os.path.basename(os.path.dirname(src))
        out = os.path.join(tmp, name + ".onnx")
        return nptest.run_nepenc([src, "-o", out, "--passes", "none"])

    # nepenc runs two at a time ahead of the checker and ORT.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futs = [pool.submit(convert, m) for m in models]
        for src, fut in zip(models, futs):
            name = os.path.basename(os.path.dirname(src))
            out = os.path.join(tmp, name + ".onnx")
            check_one(tap, counts, worker, name, src, out, fut.result())
    worker.close()
    want = {os.path.basename(os.path.dirname(m)) + ".onnx" for m in models}
    stray = sorted(set(os.listdir(tmp)) - want - {"locale"})
    tap.ok(not stray, "no temporary or extra files beside the outputs",
           "found: %s" % ", ".join(stray[:20]))

    tap.comment("checked %d models: %d bit-identical, %d shape-only, "
                "%d skipped" % (counts.models, counts.identical,
                                counts.shape_only, len(counts.skipped)))
    tap.comment("onnx.checker (full_check): %d of %d input models pass; "
                "their outputs must pass too" % (
                    counts.models - len(counts.checker_in), counts.models))
    groups = {}
    for name, why in counts.skipped:
        groups.setdefault(short_reason(why), []).append(name)
    for why, names in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        tap.comment("skipped %d: %s" % (len(names), why))
    for name, why in counts.skipped:
        tap.comment("  skipped %s: %s" % (name, why))
    if counts.checker_in:
        tap.comment("%d input models fail onnx.checker themselves "
                    "(output not required to pass):" % len(counts.checker_in))
        for name, why in counts.checker_in:
            tap.comment("  %s: %s" % (name, why[:150]))
    finish(tmp, tap)
    return tap.done()


def finish(tmp, tap):
    """Remove the scratch folder unless something failed or
    NEPENC_KEEP_TMP is set."""
    if tap.failed or nptest.env("NEPENC_KEEP_TMP"):
        tap.comment("outputs kept in %s" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


# --- the shared fixture models ----------------------------------------------

def fashion_batch(seed=0):
    """A Fashion-MNIST-like batch [4,1,28,28] float32: random pixels 0..255,
    scaled and normalised as the fixture models expect."""
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 256, size=(4, 1, 28, 28)).astype(np.float32)
    return ((px / np.float32(255) - np.float32(0.2860)) /
            np.float32(0.3530)).astype(np.float32)


def initializers(path, load_external):
    m = onnx.load(path, load_external_data=load_external)
    return m, {t.name: t for t in m.graph.initializer}


def check_external(tap, name, src, out):
    """OUT was written with --external-data: every initializer lives in
    OUT.data, and loading it gives the input's weights bit for bit."""
    data = out + ".data"
    tap.ok(os.path.isfile(data) and os.path.getsize(data) > 0,
           "%s --external-data: %s written" % (name, os.path.basename(data)))
    m, raw = initializers(out, False)
    inline = [n for n, t in raw.items()
              if t.data_location != onnx.TensorProto.EXTERNAL]
    tap.ok(not inline, "%s --external-data: all %d initializers external" % (
        name, len(raw)), "inline: %s" % ", ".join(inline[:10]))
    locs = {kv.value for t in raw.values() for kv in t.external_data
            if kv.key == "location"}
    tap.ok(locs <= {os.path.basename(data)},
           "%s --external-data: location is the file beside the model" % name,
           "locations: %s" % sorted(locs))
    try:
        _, got = initializers(out, True)
    except Exception as e:
        tap.ok(False, "%s --external-data: onnx.load with external data" %
               name, str(e))
        return
    _, want = initializers(src, True)
    bad = [n for n in want
           if n not in got or numpy_helper.to_array(got[n]).tobytes() !=
           numpy_helper.to_array(want[n]).tobytes()]
    tap.ok(not bad and len(got) == len(want),
           "%s --external-data: onnx.load gives the same %d weights" % (
               name, len(want)),
           "differ or missing: %s; %d vs %d" % (", ".join(bad[:10]),
                                                len(got), len(want)))


def no_temp_files(tap, folder, expected, what):
    extra = sorted(set(os.listdir(folder)) - set(expected))
    tap.ok(not extra, "%s: no stray files in the output folder" % what,
           "found: %s" % extra)


def shared_one(tap, worker, src, tmp):
    name = os.path.splitext(os.path.basename(src))[0]
    model = onnx.load(src, load_external_data=False)
    feeds = [nptest.encode_array(model.graph.input[0].name, fashion_batch(),
                                 "float32")]
    ref = worker.run(src, feeds)
    if not tap.ok(ref["ok"], "%s: ORT runs the input model" % name,
                  ref.get("error")):
        return
    logits = nptest.decode_output(ref["outputs"][0])
    tap.ok(logits is not None and logits.shape == (4, 10) and
           np.isfinite(logits).all() and np.ptp(logits) > 0,
           "%s: reference logits [4,10], finite, not constant" % name,
           "got %r" % (None if logits is None else logits.shape,))
    for ext in (False, True):
        folder = os.path.join(tmp, name + (".ext" if ext else ""))
        os.makedirs(folder, exist_ok=True)
        out = os.path.join(folder, name + ".onnx")
        label = name + (" --external-data" if ext else "")
        args = [src, "-o", out, "--passes", "none"]
        rc, _, err = nptest.run_nepenc(args + (["--external-data"] if ext
                                               else []))
        if not tap.ok(rc == 0 and not err and os.path.isfile(out),
                      "%s: nepenc exit 0, silent" % label,
                      "exit %s: %s" % (rc, err.strip())):
            continue
        no_temp_files(tap, folder, [name + ".onnx"] +
                      ([name + ".onnx.data"] if ext else []), label)
        why = nptest.check_model(out)
        tap.ok(why is None, "%s: onnx.checker (full_check) passes" % label,
               why)
        if ext:
            check_external(tap, name, src, out)
        got = worker.run(out, feeds)
        if not tap.ok(got["ok"], "%s: ORT runs the output" % label,
                      got.get("error")):
            continue
        diff = nptest.same_outputs(ref["outputs"], got["outputs"])
        tap.ok(diff is None, "%s: logits bit-identical" % label, diff)


def suite_shared():
    tap = Tap()
    why = nptest.OrtWorker.unavailable()
    if why:
        tap.skip_all(why)
        return 0
    folder = os.path.join(nptest.env("NP_SHARED",
                                     os.path.join(nptest.srcdir(), "..",
                                                  "shared")), "models")
    models = sorted(glob.glob(os.path.join(folder, "*.onnx")))
    if not models:
        tap.skip_all("no fixture models in %s" % folder)
        return 0
    worker = nptest.OrtWorker(timeout=300)
    why = worker.probe()
    if why:
        worker.close()
        tap.skip_all(why)
        return 0
    tmp = nptest.work_dir("roundtrip-shared")
    for src in models:
        shared_one(tap, worker, src, tmp)
    worker.close()
    finish(tmp, tap)
    return tap.done()


def main():
    suites = {"node": suite_node, "shared": suite_shared}
    if len(sys.argv) != 2 or sys.argv[1] not in suites:
        print("usage: roundtrip.py node|shared", file=sys.stderr)
        return 2
    return suites[sys.argv[1]]()


if __name__ == "__main__":
    nptest.main_guard(main)
