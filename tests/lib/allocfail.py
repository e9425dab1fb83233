"""allocfail.py - allocation-failure injection, SQLite-style (issue 11).

tests/nepenc-allocfail is nepenc with every allocation call of its own
code wrapped (tests/allocfail.c).  For each scenario (inspect, emit,
inspect --json of a convnet, eval, a short main job) a first run counts
the allocations T; then runs with NEPENC_FAIL_ALLOC=N for N in 1..T make
the N-th one fail.  Every run must either
  - succeed with the same stdout and output bytes as the clean run, or
  - exit 1 with exactly one stderr line "nepenc: ...", and leave nothing
    in the output folder (no output, no temporary file),
and never crash, trip a sanitizer or leak (LeakSanitizer, in the
sanitizer build).  make check samples N (NEPENC_ALLOCFAIL_SAMPLE runs per
scenario, default 40, always including the first and last 10);
NEPENC_ALLOCFAIL_FULL=1 sweeps every N (docs/reliability.md).
"""

import os
import shutil
import subprocess

import numpy as np

import nptest
from nptest import Tap

MARKS = nptest.CRASH_MARKS + ("leaked",)


def prog():
    return os.path.join(nptest.env("top_builddir", "."), "tests",
                        "nepenc-allocfail")


def run(args, cwd, fail_at=0, count_file=None):
    env = dict(os.environ, LC_ALL="C", OMP_NUM_THREADS="1")
    env.pop("NEPENC_FAIL_ALLOC", None)
    if fail_at:
        env["NEPENC_FAIL_ALLOC"] = str(fail_at)
    if count_file:
        env["NEPENC_ALLOC_COUNT"] = count_file
    try:
        p = subprocess.run([os.path.abspath(prog())] + args, cwd=cwd, env=env,
                           capture_output=True, timeout=300)
    except subprocess.TimeoutExpired:
        return None, b"", "timeout"
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def listing(folder):
    return sorted(os.listdir(folder))


def sample(total, k):
    if nptest.env("NEPENC_ALLOCFAIL_FULL") or total <= k:
        return list(range(1, total + 1))
    picks = set(range(1, 11)) | set(range(total - 9, total + 1))
    step = max(1, total // max(1, k - 20))
    picks |= set(range(11, total - 9, step))
    return sorted(picks)


def crash_site(args, cwd, n, err):
    """The source file of the crashing frame: from the sanitizer's report
    when there is one, else from gdb if installed; "" when unknown."""
    import re
    m = re.search(r"#0 0x[0-9a-f]+ in \S+ (\S+):\d+", err)
    if m:
        return m.group(1)
    if not shutil.which("gdb"):
        return ""
    env = dict(os.environ, LC_ALL="C", OMP_NUM_THREADS="1",
               NEPENC_FAIL_ALLOC=str(n))
    p = subprocess.run(["gdb", "-batch", "-ex", "run", "-ex", "bt 1", "--args",
                        os.path.abspath(prog())] + args, cwd=cwd, env=env,
                       capture_output=True, timeout=300)
    m = re.search(rb"^#0 .* at (\S+):\d+", p.stdout, re.M)
    return m.group(1).decode() if m else ""


def report_sites(err):
    """Source files a sanitizer report blames: the first frame of ours of
    each leak or error, and the file of a UBSan "runtime error"."""
    import re
    sites = set(re.findall(r"(\S+?\.c):\d+:\d+: runtime error", err))
    for block in re.split(r"leak of|==ERROR:", err)[1:]:
        for f in re.findall(r"#\d+ 0x[0-9a-f]+ in \S+ (\S+?):\d+", block):
            if "sanitizer" not in f:
                sites.add(f)
                break
    return sites


def scenario(tap, name, args, work, out=None):
    """Count, then sweep."""
    inputs = listing(work)
    count = os.path.join(work, "..", "count.%s" % name)
    rc, stdout0, err = run(args, work, count_file=count)
    if not tap.ok(rc == 0, "%s: the clean run succeeds" % name, err):
        return
    total = int(open(count).read())
    os.remove(count)
    data0 = open(os.path.join(work, out), "rb").read() if out else None
    after0 = listing(work)
    if out:
        os.remove(os.path.join(work, out))
    ns = sample(total, int(nptest.env("NEPENC_ALLOCFAIL_SAMPLE", "40")))
    bad = []
    failed = succeeded = 0
    for n in ns:
        rc, stdout, err = run(args, work, fail_at=n)
        lines = err.splitlines()
        why = None
        if rc is None or rc < 0 or "SEGV" in err:
            why = "crashed (%s) in %s" % (rc, crash_site(args, work, n, err)
                                           or "?")
        elif any(m in err for m in MARKS):
            why = "sanitizer, in %s: %s" % (
                " ".join(sorted(report_sites(err))) or "?",
                err.strip()[:300])
        elif rc == 0:
            succeeded += 1
            if stdout != stdout0 or (out and open(os.path.join(
                    work, out), "rb").read() != data0) or listing(work) != after0:
                why = "succeeded with a different result"
        elif rc != 1 or len(lines) != 1 or not lines[0].startswith("nepenc: "):
            why = "exit %s, %d stderr lines: %s" % (rc, len(lines), err[:300])
        elif listing(work) != inputs:
            why = "left behind: %s" % (set(listing(work)) - set(inputs))
        else:
            failed += 1
        if why:
            bad.append("N=%d: %s" % (n, why))
        for f in set(listing(work)) - set(inputs):
            os.remove(os.path.join(work, f))
    desc = ("%s: %d allocations, %d failed one by one: %d clean errors, %d "
            "recovered" % (name, total, len(ns), failed, succeeded))
    tap.ok(not bad, desc, "\n".join(bad[:20]))


def main():
    tap = Tap()
    if not os.access(prog(), os.X_OK):
        tap.skip_all("%s is not built" % prog())
        return 0
    tmp = nptest.work_dir("allocfail")
    work = os.path.join(tmp, "w")
    os.makedirs(work)
    src = nptest.srcdir()
    shutil.copy(os.path.join(src, "tests", "broken", "good.onnx"), work)
    shutil.copy(os.path.join(src, "tests", "fuzz", "corpus", "fuzz_model",
                             "convnet.onnx"), work)
    r = np.random.default_rng(0)
    np.save(os.path.join(work, "x.npy"),
            r.standard_normal((48, 4)).astype(np.float32))
    np.save(os.path.join(work, "y.npy"), r.integers(0, 3, 48).astype(np.int64))
    data = ["--data", "npy:x.npy,y.npy", "--threads", "1", "-q"]
    scenario(tap, "inspect", ["inspect", "good.onnx"], work)
    scenario(tap, "inspect --json convnet", ["inspect", "--json",
                                             "convnet.onnx"], work)
    scenario(tap, "emit (--passes none)", ["good.onnx", "-o", "out.onnx",
                                           "--passes", "none"], work,
             out="out.onnx")
    scenario(tap, "eval", ["eval", "good.onnx"] + data, work)
    scenario(tap, "main job", ["good.onnx", "-o", "out.onnx", "--max-iter",
                               "1", "--epochs", "1", "--batch", "16"] + data,
             work, out="out.onnx")
    return nptest.finish(tap, tmp)


if __name__ == "__main__":
    nptest.main_guard(main)
