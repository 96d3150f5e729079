#!/usr/bin/python3
"""versus.py — the demo's speed at the CPU's pace, this tree against an older commit's, alternated.

    /usr/bin/python3 bench/versus.py --older TREE [--pairs 3] [--epochs 3] [--json versus.json]

TREE is a checkout of the older commit with its own build in TREE/build (`bash scripts/bench.sh
--against COMMIT` makes one at build/against-COMMIT). Each side trains its own tree's
configs/demo.json with its own bundled plugins and data, the two in pairs on this machine,
alternating which goes first, so a slower machine or a busy neighbour slows both alike: the ratio
tells the code from the machine. A run's speed is its median epoch after the first (overhead.py)
and the samples/s the trainer prints when it is done; the row's ratio is the median of the pairs'
(this / older epoch time: below 1 is faster than before).
"""
import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import REPO, run_time, summarize, train  # noqa: E402

DONE = re.compile(r"done after \d+ steps \(([\d.]+) samples/s\)")


def samples_per_s(output):
    """The samples/s of the trainer's last line, `done after N steps (X samples/s); ...`."""
    found = DONE.findall(output)
    if not found:
        raise ValueError("the run printed no 'done after N steps (X samples/s)'")
    return float(found[-1])


def commit_of(tree):
    done = subprocess.run(["git", "-C", str(tree), "log", "-1", "--format=%h %cs"], capture_output=True, text=True)
    return done.stdout.strip() or str(tree)


def measure(args):
    sides = {"this": REPO, "older": args.older.resolve()}
    scratch = Path(tempfile.mkdtemp(prefix="bulkhead-versus-"))
    pairs, speeds = [], {"this": [], "older": []}
    try:
        for rep in range(args.pairs):
            order = ("this", "older") if rep % 2 == 0 else ("older", "this")
            times = {}
            for side in order:
                tree = sides[side]
                per_epoch, wall, output = train(tree / "build" / "bin" / "bulkhead", tree / "configs" / "demo.json",
                                                scratch / f"{side}-{rep}", args.epochs, [], True, tree)
                times[side] = run_time(per_epoch)
                speeds[side].append(samples_per_s(output))
                print(f"versus: pair {rep + 1}/{args.pairs} {side}: epoch {times[side]:.2f} s, "
                      f"{speeds[side][-1]:.1f} samples/s (run {wall:.1f} s)", file=sys.stderr, flush=True)
            pairs.append((times["this"], times["older"]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    row = summarize(pairs)
    this, older = statistics.median(speeds["this"]), statistics.median(speeds["older"])
    row.update({"name": "versus_demo", "older": commit_of(sides["older"]), "samples_per_s": {"this": this, "older": older},
                "pairs": args.pairs, "epochs_per_run": args.epochs,
                "note": f"{this:.1f} against {older:.1f} samples/s, older {commit_of(sides['older'])}"})
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--older", type=Path, required=True, help="the older commit's checkout, built in TREE/build")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is warm-up)")
    parser.add_argument("--json", type=Path, help="also write the row here")
    args = parser.parse_args(argv)
    row = measure(args)
    print(f"versus_demo: this {row['with_s']:.2f} s / older {row['without_s']:.2f} s per epoch = {row['ratio']:.3f} "
          f"(pairs: {', '.join(f'{r:.3f}' for r in row['pair_ratios'])}); {row['note']}")
    if args.json:
        args.json.write_text(json.dumps({"rows": [row]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
