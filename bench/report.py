#!/usr/bin/python3
"""report.py — one table from the suite's results: every row, its floor in the same run, the ratio,
the target of issue 12 and whether it is met. scripts/bench.sh runs the suite and then this.

    /usr/bin/python3 bench/report.py --dir RESULTS [--json FILE]

RESULTS holds runner_bench.json, jail_bench.json, model_region_bench.json (Google Benchmark's
--benchmark_out, JSON) and overhead.json (bench/overhead.py --json); a missing file or row is
reported as "not run". ROWS below is the one place that says which row is compared with which
floor and against which target.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

# A target: ("ratio", x): time / floor <= x; ("time", seconds): time <= seconds.
CALL = ("ratio", 1.3)         # item 1: a call hook at most 1.3x the raw ZeroMQ round trip
NOTIFY = ("time", 5e-6)       # item 1: a notify hook at most 5 us of the caller's time
IMAGE = ("ratio", 1.5)        # item 2: a pass-through image transform at most 1.5x the raw round trip of its bytes
OVERHEAD = ("ratio", 1.03)    # item 4: the demo's plugins at most 3 % of epoch time
RESTART_CPP = ("time", 0.2)   # item 4: a C++ plugin restarts in under 200 ms
RESTART_PY = ("time", 1.0)    # item 4: a Python one in under 1 s
BATCHED_CAPTION = ("time", 10e-6)  # issue 21 item 6: a caption in a batch of 32 at most 10 us through any SDK

FLOOR = "BM_Floor_RawZmqRoundTrip"
IMAGE_SIDES = (64, 256, 512, 1024)  # runner_bench's image rows: BM_..._Image.../<side>
IN_MESSAGE_SIDES = (256, 512, 1024)  # ... and those with the image region off (docs/protocol.md, section 2.2)


def image_floor(side):
    return f"BM_Floor_RawZmqRoundTrip_Image/{side}"


def image_rows():
    rows = []
    for side in IMAGE_SIDES:
        rows.append(("runner", image_floor(side), f"floor: raw round trip, {side}x{side} image request", None, None))
        for runtime, name in (("Cpp", "C++"), ("Python", "Python"), ("Node", "JavaScript")):
            rows.append(("runner", f"BM_Runner_TransformImage_{runtime}PassThrough/{side}",
                         f"transform_pil_image {side}x{side} -> {name} pass-through, shared memory", image_floor(side), IMAGE))
            if side in IN_MESSAGE_SIDES:  # the same with the image region off: pixels in the message
                rows.append(("runner", f"BM_Runner_TransformImage_{runtime}InMessage/{side}",
                             f"transform_pil_image {side}x{side} -> {name} pass-through, in the message",
                             image_floor(side), None))
    rows.append(("runner", "BM_Runner_TransformImage_CppImageColour/256", "transform_pil_image 256x256 -> C++ image_colour",
                 image_floor(256), None))
    rows.append(("runner", "BM_Runner_TransformImage_PythonColorGrade/256",
                 "transform_pil_image 256x256 -> Python color_grade", image_floor(256), None))
    # item 3: 4 loader threads through color_grade by pool size; the floor is a pool of one host
    rows.append(("runner", "BM_Pool_ColorGrade_4Loaders/0", "4 loaders x 8 images 256x256, no plugin (the loader alone)",
                 None, None))
    for pool in (1, 2, 4):
        rows.append(("runner", f"BM_Pool_ColorGrade_4Loaders/{pool}",
                     f"4 loaders x 8 images 256x256 -> color_grade, pool of {pool}",
                     None if pool == 1 else "BM_Pool_ColorGrade_4Loaders/1", None))
    return rows


# runner_bench's BM_Runner_TransformCaptions_<runtime>/<captions in one batch>
BATCH_ROW = re.compile(r"^BM_Runner_TransformCaptions_\w+/(\d+)$")


def caption_batch_rows():
    """Per caption: a batch of 32 against one caption a message (batch of 1) of the same plugin."""
    rows = []
    for runtime, name in (("Cpp", "C++"), ("Python", "Python"), ("Node", "JavaScript")):
        single = f"BM_Runner_TransformCaptions_{runtime}/1"
        rows.append(("runner", single, f"transform_caption -> {name}, one caption a message, per caption", None, None))
        rows.append(("runner", f"BM_Runner_TransformCaptions_{runtime}/32",
                     f"transform_captions -> {name}, 32 captions a batch, per caption", single, BATCHED_CAPTION))
    return rows


def per_item(times):
    """A batch row's time per item: BM_Runner_TransformCaptions_Cpp/32 is divided by 32."""
    out = dict(times)
    for name, seconds in times.items():
        batch = BATCH_ROW.match(name)
        if batch:
            out[name] = seconds / int(batch.group(1))
    return out


# (source, row, what it is, floor row in the same source or None for a floor itself, target or None)
ROWS = [
    ("runner", FLOOR, "floor: raw ZeroMQ round trip, caption request", None, None),
    ("runner", "BM_Unsupervised_CallHook_Cpp", "call hook, bare Connection (no supervision) -> C++", FLOOR, None),
    ("runner", "BM_Runner_CallHook_Cpp_WeakJail", "call hook on_epoch_start -> C++, weak jail", FLOOR, None),
    ("runner", "BM_Runner_CallHook_Cpp", "call hook on_epoch_start -> C++", FLOOR, CALL),
    ("runner", "BM_Runner_TransformCaption_Cpp", "transform_caption -> C++", FLOOR, CALL),
    ("runner", "BM_Runner_StepHook_Cpp", "step hook on_step_end, waited -> C++", FLOOR, None),
    ("runner", "BM_Runner_StepHook_Python", "step hook on_step_end, waited -> Python SDK", FLOOR, None),
    ("runner", "BM_Runner_StepHook_Node", "step hook on_step_end, waited -> JavaScript SDK", FLOOR, None),
    ("runner", "BM_Runner_NotifyHook_CallerCost", "notify hook on_step_end, caller's cost", FLOOR, NOTIFY),
    *caption_batch_rows(),
    *image_rows(),
    # jail_bench: BM_<what>/<runtime 0 C++, 1 Python>/<jail 0 weak, 1 full>; the floor is the weak jail
    ("jail", "BM_Start/0/0", "start, C++, weak jail", None, None),
    ("jail", "BM_Start/0/1", "start, C++, full jail", "BM_Start/0/0", None),
    ("jail", "BM_Start/1/0", "start, Python, weak jail", None, None),
    ("jail", "BM_Start/1/1", "start, Python, full jail", "BM_Start/1/0", None),
    ("jail", "BM_Restart/0/0", "restart + next hook, C++, weak jail", None, None),
    ("jail", "BM_Restart/0/1", "restart + next hook, C++, full jail", "BM_Restart/0/0", RESTART_CPP),
    ("jail", "BM_Restart/1/0", "restart + next hook, Python, weak jail", None, None),
    ("jail", "BM_Restart/1/1", "restart + next hook, Python, full jail", "BM_Restart/1/0", RESTART_PY),
    ("jail", "BM_TransformCaption/0/0", "transform_caption, C++, weak jail", None, None),
    ("jail", "BM_TransformCaption/0/1", "transform_caption, C++, full jail", "BM_TransformCaption/0/0", None),
    ("jail", "BM_TransformCaption/1/0", "transform_caption, Python, weak jail", None, None),
    ("jail", "BM_TransformCaption/1/1", "transform_caption, Python, full jail", "BM_TransformCaption/1/0", None),
    # model_region_bench: one on_model_step's tensors, inline in the message (floor) vs the shared region
    ("region", "BM_Inline/2048", "model tensors 2 KiB, inline in the message", None, None),
    ("region", "BM_Region/2048", "model tensors 2 KiB, shared region", "BM_Inline/2048", None),
    ("region", "BM_Inline/104857600", "model tensors 100 MB, inline in the message", None, None),
    ("region", "BM_Region/104857600", "model tensors 100 MB, shared region", "BM_Inline/104857600", None),
    # overhead.py: median epoch time with the demo's plugins; its floor is the same run without them
    ("overhead", "overhead_cpu", "demo plugins, epoch time at the CPU's pace", "no plugins", OVERHEAD),
    ("overhead", "overhead_gpu", "demo plugins, epoch time at a GPU's pace (5 ms steps)", "no plugins", OVERHEAD),
    ("overhead", "overhead_gpu2", "demo plugins, epoch time at a GPU's pace (2 ms steps)", "no plugins", OVERHEAD),
    # versus.py (bash scripts/bench.sh --against COMMIT): the demo's samples/s, this tree against an older one
    ("versus", "versus_demo", "demo samples/s at the CPU's pace, this commit against an older one", "older commit", None),
    # data_parallel.py: the demo's epoch time with 2 ranks (bulkhead train --nproc 2) against 1
    ("data_parallel", "data_parallel_demo", "demo epoch time with 2 ranks on the CPU", "1 rank", None),
]

FILES = {"runner": "runner_bench.json", "jail": "jail_bench.json", "region": "model_region_bench.json",
         "overhead": "overhead.json", "versus": "versus.json", "data_parallel": "data_parallel.json"}
PAIRED = ("overhead", "versus", "data_parallel")  # rows of paired runs: (with, without, the median of the pairs' ratios)
UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


# Google Benchmark appends settings to a run's name: BM_X/real_time, BM_X/iterations:20000/real_time.
SETTING = re.compile(r"^(real_time|process_time|manual_time|iterations:\d+|min_time:[\d.]+s?|repeats:\d+|threads:\d+)$")


def row_name(name):
    """A benchmark's name without the settings Google Benchmark appends: BM_Start/0/1/real_time -> BM_Start/0/1;
    runner_bench's earlier image names in today's form: BM_Runner_TransformImage256_CppPassThrough ->
    BM_Runner_TransformImage_CppPassThrough/256, BM_Floor_RawZmqRoundTrip_Image256 -> ..._Image/256."""
    name = "/".join(part for part in name.split("/") if not SETTING.match(part))
    name = re.sub(r"^BM_Floor_RawZmqRoundTrip_Image(\d+)$", r"BM_Floor_RawZmqRoundTrip_Image/\1", name)
    return re.sub(r"^BM_Runner_TransformImage(\d+)_(\w+)$", r"BM_Runner_TransformImage_\2/\1", name)


def benchmark_times(document):
    """Google Benchmark JSON -> {run name: seconds}: the median aggregate when there are repetitions,
    else the mean of the iterations rows; real time (every benchmark here uses UseRealTime)."""
    medians, runs = {}, {}
    for entry in document.get("benchmarks", []):
        if entry.get("error_occurred"):
            continue
        name = row_name(entry.get("run_name", entry["name"]))
        seconds = entry["real_time"] * UNITS[entry.get("time_unit", "ns")]
        if entry.get("run_type") == "aggregate":
            if entry.get("aggregate_name") == "median":
                medians[name] = seconds
        else:
            runs.setdefault(name, []).append(seconds)
    times = {name: sum(values) / len(values) for name, values in runs.items()}
    times.update(medians)
    return times


def extra_runner_rows(times):
    """Runner rows the table does not name (another image size, a new benchmark): a floor by rule,
    the image target for a pass-through, so new rows are reported without editing ROWS."""
    named = {row for source, row, *_ in ROWS if source == "runner"}
    rows = []
    for name in sorted(times):
        if name in named or name.startswith("BM_Floor_RawZmqRoundTrip"):
            if name not in named:
                rows.append(("runner", name, name, None, None))
            continue
        size = re.search(r"Image_\w+/(\d+)$", name)
        floor = image_floor(size.group(1)) if size else FLOOR
        target = IMAGE if size and "PassThrough" in name else None
        rows.append(("runner", name, name, floor, target))
    return rows


def load(results):
    """{source: {row: seconds}}, and for overhead {row: (with, without, median of the pairs' ratios)}."""
    data = {}
    for source, file in FILES.items():
        path = Path(results) / file
        if not path.exists():
            data[source] = {}
            continue
        document = json.loads(path.read_text())
        if source in PAIRED:
            data[source] = {row["name"]: (row["with_s"], row["without_s"], row.get("ratio"), row.get("note"))
                            for row in document["rows"]}
        else:
            data[source] = benchmark_times(document)
            if source == "runner":
                data[source] = per_item(data[source])
    return data


def evaluate(target, seconds, ratio):
    if target is None or seconds is None:
        return None
    kind, limit = target
    value = ratio if kind == "ratio" else seconds
    return None if value is None else value <= limit


def build_rows(data):
    rows = []
    for source, name, what, floor, target in ROWS + extra_runner_rows(data.get("runner", {})):
        times = data.get(source, {})
        seconds = floor_seconds = ratio = None
        if source in PAIRED and name in times:
            # the median of the pairs' ratios (overhead.py, versus.py), not the ratio of the two medians
            seconds, floor_seconds, ratio, note = times[name]
            what = f"{what} ({note})" if note else what
        elif source not in PAIRED:
            seconds = times.get(name)
            floor_seconds = times.get(floor) if floor else seconds
        if ratio is None and seconds is not None and floor_seconds:
            ratio = seconds / floor_seconds
        rows.append({"source": source, "row": name, "what": what, "time_s": seconds,
                     "floor": floor or "(itself)", "floor_time_s": floor_seconds, "ratio": ratio,
                     "target": None if target is None else {"kind": target[0], "max": target[1]},
                     "met": evaluate(target, seconds, ratio)})
    return rows


def format_time(seconds):
    if seconds is None:
        return "not run"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def format_target(target):
    if target is None:
        return ""
    return f"≤ {target['max']:g}× floor" if target["kind"] == "ratio" else f"≤ {format_time(target['max'])}"


def machine():
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "host": platform.node(),
            "cpus": os.cpu_count(), "cpu": cpu, "load_average": [round(x, 2) for x in os.getloadavg()],
            "commit": commit}


def table(rows, info):
    lines = [f"{info['date']}, {info['cpus']} CPUs ({info['cpu']}), load average "
             f"{' '.join(str(x) for x in info['load_average'])}, commit {info['commit']}", "",
             "| row | time | floor | ratio | target | met |", "| --- | ---: | --- | ---: | --- | --- |"]
    for row in rows:
        ratio = "1.0 (floor)" if row["floor"] == "(itself)" and row["time_s"] is not None else (
            f"{row['ratio']:.2f}" if row["ratio"] is not None else "")
        met = "" if row["met"] is None else ("yes" if row["met"] else "**no**")
        floor = "" if row["floor"] == "(itself)" else (
            f"{row['floor']} ({format_time(row['floor_time_s'])})" if row["floor_time_s"] else row["floor"])
        lines.append(f"| {row['what']} | {format_time(row['time_s'])} | {floor} | {ratio} | "
                     f"{format_target(row['target'])} | {met} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="the folder with the suite's JSON results")
    parser.add_argument("--json", type=Path, help="write the table as JSON here")
    args = parser.parse_args(argv)
    rows = build_rows(load(args.dir))
    info = machine()
    print(table(rows, info))
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
