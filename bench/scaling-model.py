#!/usr/bin/python3
"""scaling-model.py - expected data-parallel efficiency of nepenc's
fine-tuning from the bandwidth model of docs/scaling.md.

    bench/scaling-model.py PARAMS MS_PER_STEP [NODE_CORES]

PARAMS: the model's float parameters (the all-reduce moves every
gradient); MS_PER_STEP: milliseconds of one step of the global batch on
one node (bench/scaling's ms/step, measured with --threads = the node's
cores).  Prints the efficiency for 2 to 64 nodes at 10, 25 and 100 GbE:

    compute(N) = t1 / N                 (the global batch split N ways)
    comm(N)    = 2 (N-1)/N x 4 B x PARAMS / bw  +  2 (N-1) x alpha
    E(N)       = compute / (compute + comm)     (nepenc: no overlap)
    E_overlap  = compute / max(compute, comm)   (if it all overlapped)
    E_weak     = t1 / (t1 + comm)               (--batch 128 x N: each
                                                 node keeps its batch)

bw is 90% of the line rate (TCP payload), alpha 50 us a message.
"""
import sys

LINKS = [("10GbE", 10e9), ("25GbE", 25e9), ("100GbE", 100e9)]
NODES = [2, 4, 8, 16, 32, 64]
EFFECTIVE = 0.9
ALPHA = 50e-6


def comm_seconds(n, params, bits):
    bw = EFFECTIVE * bits / 8
    return 2 * (n - 1) / n * 4 * params / bw + 2 * (n - 1) * ALPHA


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    params, t1 = float(sys.argv[1]), float(sys.argv[2]) / 1000
    print("parameters %.3gM, %.1f MB of gradients, %.1f ms/step on one node"
          % (params / 1e6, 4 * params / 1e6, t1 * 1000))
    print("| nodes | compute ms | " + " | ".join(
        "%s comm ms | E | E overlapped | E weak" % name for name, _ in LINKS)
        + " |")
    print("|---:|---:|" + "---:|---:|---:|---:|" * len(LINKS))
    for n in NODES:
        comp = t1 / n
        cells = []
        for _, bits in LINKS:
            c = comm_seconds(n, params, bits)
            cells.append("%.1f | %.0f%% | %.0f%% | %.0f%%" % (
                1000 * c, 100 * comp / (comp + c), 100 * min(1, comp / c),
                100 * t1 / (t1 + c)))
        print("| %d | %.1f | %s |" % (n, 1000 * comp, " | ".join(cells)))


if __name__ == "__main__":
    main()
