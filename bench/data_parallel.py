#!/usr/bin/python3
"""data_parallel.py — samples/s of the demo with 1 rank and with 2 (bulkhead train --nproc 2).

    /usr/bin/python3 bench/data_parallel.py                 # 3 pairs, prints both and the ratio
    /usr/bin/python3 bench/data_parallel.py --quick --json data_parallel.json

Runs `bulkhead train --config configs/demo.json` with its plugins, in pairs of one run of one
process and one of `--nproc 2`, alternating which goes first, the same global batch, each with
its default threads (the cores, shared out among the ranks). A run's samples/s is its training
images over its epoch time (overhead.py's: the median epoch after the first, hooks, loader waits
and validation included). A pair's ratio is the epoch time of 2 ranks over 1 (below 1: faster);
the row's is the median over pairs (bench/report.py's row data_parallel_demo). On the CPU two ranks share the cores one process would use: what they gain is the work
that does not split into threads (the loader, the plugins, small ops); one rank per GPU is the
use that scales.
"""
import argparse
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

from overhead import REPO, epoch_seconds, run_time, train


def training_images(output):
    """How many images an epoch trains on, from train.log's "N training / M validation images"."""
    found = re.search(r"(\d+) training / \d+ validation images", output)
    if not found:
        raise ValueError("no 'N training / M validation images' line in the run's output")
    return int(found.group(1))


def samples_per_s(output, epochs):
    return training_images(output) / run_time(epochs)


def summarize(pairs):
    """pairs: [((one_s, one_rate), (two_s, two_rate))] -> report.py's paired row."""
    ratios = [two[0] / one[0] for one, two in pairs]
    return {"name": "data_parallel_demo",
            "with_s": statistics.median(two[0] for _, two in pairs),
            "without_s": statistics.median(one[0] for one, _ in pairs),
            "ratio": statistics.median(ratios), "pair_ratios": ratios,
            "note": "1 rank %.1f samples/s, 2 ranks %.1f" % (statistics.median(one[1] for one, _ in pairs),
                                                               statistics.median(two[1] for _, two in pairs))}


def measure(args):
    pairs = []
    config = REPO / "configs" / "demo.json"
    with tempfile.TemporaryDirectory(prefix="bulkhead-dp-bench-") as scratch:
        for pair in range(args.pairs):
            order = [1, 2] if pair % 2 == 0 else [2, 1]
            rates = {}
            for nproc in order:
                extra = ["--nproc", "2"] if nproc == 2 else []
                epochs, _, output = train(args.bulkhead, config, Path(scratch) / ("ranks-%d" % nproc), args.epochs, extra,
                                          plugins=True)
                rates[nproc] = (run_time(epochs), samples_per_s(output, epochs))
                print("pair %d, %d rank(s): %.1f samples/s" % (pair + 1, nproc, rates[nproc][1]), file=sys.stderr)
            pairs.append((rates[1], rates[2]))
    return summarize(pairs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bulkhead", default=str(REPO / "build" / "bin" / "bulkhead"))
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="1 pair of 2-epoch runs: a smoke run, not a measurement")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.epochs = 1, 2
    row = measure(args)
    print("demo with 2 ranks: %.2fx the epoch time of 1 (%s)" % (row["ratio"], row["note"]))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": [row]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
