#!/usr/bin/python3
"""overhead.py — what the demo's plugin set costs a user: epoch time with plugins / without.

    /usr/bin/python3 bench/overhead.py                    # every pace, 3 pairs each, prints the ratios
    /usr/bin/python3 bench/overhead.py --quick --json overhead.json

Runs `bulkhead train --config configs/demo.json` with its plugins and with `--plugins` (none), in
pairs, alternating which goes first, at three paces:

- cpu: the demo as it trains here (the model's compute on the CPU);
- gpu: `--bench-pace-ms 5`, the trainer's benchmark mode: each step waits 5 ms instead of the
  model's compute (a GPU's pace), while the data loader and every hook run as in training;
- gpu2: the same at 2 ms a step (a faster GPU, or a smaller model).

A run's time is the median of its epochs' `epoch_s` (metrics.jsonl: wall time from before
on_epoch_start to after on_epoch_end, loader waits and hooks included), leaving out the first
epoch (warm-up). A pair's ratio is with / without; a row's ratio is the median over pairs.
Plugin start-up is not in an epoch (it is jail_bench's BM_Start); neither are the samples and
checkpoints written between epochs.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# pace name -> extra arguments, epochs per run (full, --quick)
PACES = {
    "cpu": {"args": [], "epochs": 3, "quick_epochs": 2},
    "gpu": {"args": ["--bench-pace-ms", "5"], "epochs": 12, "quick_epochs": 4},
    "gpu2": {"args": ["--bench-pace-ms", "2"], "epochs": 12, "quick_epochs": 4},
}


def epoch_seconds(run_dir):
    """Each epoch's epoch_s from a run's metrics.jsonl, in order."""
    seconds = []
    with open(Path(run_dir) / "metrics.jsonl") as metrics:
        for line in metrics:
            record = json.loads(line)
            if "epoch_s" in record:
                seconds.append(record["epoch_s"])
    return seconds


def run_time(epochs):
    """A run's epoch time: the median epoch after the first (the first warms up); the only one if alone."""
    if not epochs:
        raise ValueError("no epoch_s in metrics.jsonl")
    return statistics.median(epochs[1:] if len(epochs) > 1 else epochs)


def summarize(pairs):
    """pairs: [(with_s, without_s)] -> the row: medians and the median of the pair ratios."""
    ratios = [w / wo for w, wo in pairs]
    return {
        "with_s": statistics.median(w for w, _ in pairs),
        "without_s": statistics.median(wo for _, wo in pairs),
        "ratio": statistics.median(ratios),
        "pair_ratios": ratios,
    }


def train(bulkhead, config, run_dir, epochs, extra, plugins, tree=REPO):
    """One training run in `tree` (its plugins, its data): each epoch's seconds, the wall time, its output."""
    command = [str(bulkhead), "train", "--config", str(config), "--max-epochs", str(epochs),
               "--run-dir", str(run_dir), "--overwrite", *extra]
    if not plugins:
        command.append("--plugins")  # with no names: none
    started = time.monotonic()
    done = subprocess.run(command, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-4000:])
        raise SystemExit(f"{Path(sys.argv[0]).stem}: {' '.join(command)} exited {done.returncode}")
    return epoch_seconds(run_dir), time.monotonic() - started, done.stdout


def measure(args):
    scratch = Path(tempfile.mkdtemp(prefix="bulkhead-overhead-"))
    rows = []
    try:
        for pace in args.paces:
            spec = PACES[pace]
            epochs = spec["quick_epochs" if args.quick else "epochs"]
            pairs = []
            for rep in range(args.pairs):
                order = (True, False) if rep % 2 == 0 else (False, True)  # alternate who goes first
                times = {}
                for plugins in order:
                    run_dir = scratch / f"{pace}-{rep}-{'plugins' if plugins else 'none'}"
                    per_epoch, wall, _ = train(args.bulkhead, args.config, run_dir, epochs, spec["args"], plugins)
                    times[plugins] = run_time(per_epoch)
                    print(f"overhead: {pace} pair {rep + 1}/{args.pairs} {'with' if plugins else 'without'} plugins: "
                          f"epoch {times[plugins] * 1000:.1f} ms ({len(per_epoch)} epochs, run {wall:.1f} s)",
                          file=sys.stderr, flush=True)
                pairs.append((times[True], times[False]))
            row = summarize(pairs)
            row.update({"name": f"overhead_{pace}", "pace": pace, "epochs_per_run": epochs, "pairs": args.pairs,
                        "config": str(args.config)})
            rows.append(row)
    finally:
        if args.keep:
            print(f"overhead: runs kept in {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bulkhead", type=Path, default=REPO / "build" / "bin" / "bulkhead")
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.json")
    parser.add_argument("--pairs", type=int, default=None, help="runs with and without plugins per pace (3; 1 with --quick)")
    parser.add_argument("--paces", nargs="+", choices=sorted(PACES), default=["cpu", "gpu", "gpu2"])
    parser.add_argument("--quick", action="store_true", help="one pair, fewer epochs: a smoke run, not a measurement")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--keep", action="store_true", help="keep the run folders")
    args = parser.parse_args(argv)
    if args.pairs is None:
        args.pairs = 1 if args.quick else 3
    rows = measure(args)
    for row in rows:
        print(f"{row['name']}: with plugins {row['with_s'] * 1000:.1f} ms / without {row['without_s'] * 1000:.1f} ms "
              f"per epoch = {row['ratio']:.3f} (pairs: {', '.join(f'{r:.3f}' for r in row['pair_ratios'])})")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
