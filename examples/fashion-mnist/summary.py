#!/usr/bin/python3
"""summary.py - the dense model against the pruned one, as a table.

    summary.py model.json pruned.json latency.json

model.json is score.py's (PyTorch's test top-1), pruned.json nepenc's --json
summary, latency.json the JSON lines of bench/latency.js (one per model and
batch size).  Prints the table on standard output.
"""

import json
import os
import sys


def latencies(path):
    """{(model file name, batch): median ms} from latency.js's lines."""
    out = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                d = json.loads(line)
                if "median_ms" in d:
                    out[(os.path.basename(d["model"]), d["batch"])] = \
                        d["median_ms"]
    return out


def ratio(a, b):
    return "%.2fx" % (b / a) if a and b is not None else "-"


def main(argv):
    if len(argv) != 4:
        sys.exit("usage: summary.py model.json pruned.json latency.json")
    with open(argv[1]) as f:
        torch_doc = json.load(f)
    with open(argv[2]) as f:
        s = json.load(f)
    lat = latencies(argv[3])

    rows = [("", "dense", "pruned", "pruned/dense")]
    rows.append(("%s top-1 (%%)" % s["split"], "%.2f" % s["dense_top1"],
                 "%.2f" % s["top1"],
                 "%+.2f points" % (s["top1"] - s["dense_top1"])))
    rows.append(("nodes", str(s["nodes_before"]), str(s["nodes_after"]),
                 ratio(s["nodes_before"], s["nodes_after"])))
    rows.append(("longest path", str(s["depth_before"]),
                 str(s["depth_after"]),
                 ratio(s["depth_before"], s["depth_after"])))
    rows.append(("rectified layers", str(s["layers"]),
                 str(s["layers"] - s["removed"]),
                 "%d removed" % s["removed"]))
    rows.append(("sparsity (%)", "0.0", "%.1f" % (100 * s["sparsity"]), ""))
    for batch in (1, 64):
        d = lat.get(("model.onnx", batch))
        p = lat.get(("pruned.onnx", batch))
        rows.append(("latency, batch %d (ms)" % batch,
                     "%.3f" % d if d is not None else "-",
                     "%.3f" % p if p is not None else "-", ratio(d, p)))

    w = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("%-*s  %*s  %*s  %s" % (w[0], r[0], w[1], r[1], w[2], r[2],
                                      r[3]))
    print()
    print("PyTorch's test top-1 of the trained model: %.2f%%; nepenc: "
          "%d iterations, iterate %d chosen, %.0f s."
          % (torch_doc["test_top1"], s["iterations"], s["chosen"],
             s["seconds"]))
    print("latency: onnxruntime, median of repeated runs (latency.json).")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
