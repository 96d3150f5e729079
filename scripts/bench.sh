#!/usr/bin/env bash
# The whole benchmark suite in one command: builds what it needs, runs runner_bench, jail_bench,
# model_region_bench and bench/overhead.py, and prints one table: every row, its floor measured in
# the same run, the ratio, issue 12's target and whether it is met (bench/README.md).
#
#   bash scripts/bench.sh                       # about 5 minutes on 2 cores
#   bash scripts/bench.sh --json bench.json     # also the table as JSON
#   bash scripts/bench.sh --quick               # a smoke run (1 repetition, short runs): not a measurement
#   bash scripts/bench.sh --out DIR             # keep the raw results (Google Benchmark JSON, overhead.json) in DIR
#   bash scripts/bench.sh --overhead-args "--pairs 1 --paces gpu"   # passed on to bench/overhead.py
#   bash scripts/bench.sh --against d1a9e9c     # also the demo's samples/s against that commit, alternated
#                                               # (bench/versus.py; builds it once in build/against-COMMIT)
#
# Which row is compared with which floor, and the targets, are in bench/report.py (ROWS).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }
json="" quick=0 out="" build=build overhead_args="" against=""
while (($#)); do
  case "$1" in
    --json) json="${2:?--json needs a file}"; shift 2 ;;
    --quick) quick=1; shift ;;
    --out) out="${2:?--out needs a folder}"; shift 2 ;;
    --overhead-args) overhead_args="${2?--overhead-args needs arguments}"; shift 2 ;;
    --build-dir) build="${2:?--build-dir needs a folder}"; shift 2 ;;
    --against) against="${2:?--against needs a commit}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[[ -n "$json" ]] && json="$(realpath -m "$json")"

# The older commit checked out beside this tree (a git worktree) and built there once: the
# trainer, the plugin host and the demo's plugins, with the JavaScript SDK's packages of this tree.
build_older() {
  local commit="$1" tree="$2"
  [[ -d "$tree" ]] || git worktree add --detach "$tree" "$commit" >&2
  [[ -d "$tree/plugin-sdk/node/node_modules" || ! -d plugin-sdk/node/node_modules ]] ||
    cp -a plugin-sdk/node/node_modules "$tree/plugin-sdk/node/"
  [[ -f "$tree/build/CMakeCache.txt" ]] || cmake -S "$tree" -B "$tree/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >&2
  echo "bench.sh: building $commit in $tree (once)" >&2
  cmake --build "$tree/build" -j"$(nproc)" --target bulkhead bulkhead-plugin-host bulkhead_caption_tag_shuffle >&2
}

PYTHON=/usr/bin/python3  # Debian's, with python3-zmq and friends: never the first python3 on PATH
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
# Everything: the benchmarks, the trainer, the plugin host and every plugin the demo and the benches start.
cmake --build "$build" -j"$(nproc)" >&2

if [[ -z "$out" ]]; then
  out="$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-bench-XXXXXX")"
  trap 'rm -rf "$out"' EXIT
fi
mkdir -p "$out"

if ((quick)); then
  gbench=(--benchmark_min_time=0.05 --benchmark_repetitions=1)
  overhead=(--quick)
else
  gbench=(--benchmark_min_time=0.3 --benchmark_repetitions=3 --benchmark_report_aggregates_only=true)
  overhead=()
fi
bin="$build/bin"
for bench in runner_bench jail_bench model_region_bench; do
  echo "bench.sh: $bench" >&2
  "$bin/$bench" "${gbench[@]}" --benchmark_out="$out/$bench.json" --benchmark_out_format=json >&2
done
echo "bench.sh: overhead.py" >&2
# shellcheck disable=SC2086  # --overhead-args is a list of words
"$PYTHON" bench/overhead.py --bulkhead "$bin/bulkhead" --json "$out/overhead.json" "${overhead[@]}" $overhead_args >&2

echo "bench.sh: data_parallel.py" >&2
dp=()
((quick)) && dp=(--quick)
"$PYTHON" bench/data_parallel.py --bulkhead "$bin/bulkhead" --json "$out/data_parallel.json" "${dp[@]}" >&2

if [[ -n "$against" ]]; then
  older="$(realpath -m "$build/against-$against")"
  build_older "$against" "$older"
  echo "bench.sh: versus.py against $against" >&2
  versus=()
  ((quick)) && versus=(--pairs 1 --epochs 2)
  "$PYTHON" bench/versus.py --older "$older" --json "$out/versus.json" "${versus[@]}" >&2
fi

"$PYTHON" bench/report.py --dir "$out" ${json:+--json "$json"}
