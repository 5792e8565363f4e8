#!/usr/bin/env bash
# The libFuzzer targets of fuzz/ (docs/bad-input.md, "Fuzzing"): builds them with Clang
# (-DPEFT_FUZZ=ON: ASan + UBSan + libFuzzer) and runs each in turn, first over its seeds
# (fuzz/seeds/TARGET) and then fuzzing for SECONDS, one line per target with its executions.
# Exits 1 when any target reports a finding: a crash, an exception other than peft::Error, a
# failed internal check, a sanitizer report, a leak, a timeout (10 s on one input) or an
# allocation past 1 GiB (RSS past 2 GiB); the input that did it is kept in
# BUILD_DIR/fuzz-crashes/ and its log is printed.
#
#   scripts/fuzz.sh --smoke                  CI: every target, 20 s each
#   scripts/fuzz.sh [--seconds N] [--build DIR] [TARGET...]
#                                            (default 60 s, build-fuzz, every target; TARGET is
#                                            e.g. torch_pickle or fuzz_torch_pickle)
#   FUZZ_JOBS=2 scripts/fuzz.sh ...           parallel compile jobs (default: ninja's choice)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
seconds=60
build=build-fuzz
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) seconds=20 ;;
    --seconds) seconds="$2"; shift ;;
    --build) build="$2"; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("${1#fuzz_}") ;;
  esac
  shift
done
all=(safetensors torch_pickle hf_config adapter_config records yaml_config tokenizer_json
  tokenizer_vocab_txt tokenizer_spm)
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
case "$build" in /*) ;; *) build="$root/$build" ;; esac
for t in "${targets[@]}"; do
  [ -d "fuzz/seeds/$t" ] || { echo "fuzz.sh: no target $t (fuzz/seeds/$t)" >&2; exit 2; }
done

if [ ! -f "$build/build.ninja" ]; then
  launcher=()
  if command -v ccache >/dev/null; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
  fi
  # OSS-Fuzz's flags: -O1 with line tables only (symbolized stacks, a quarter less compile time
  # than -O2 -g).
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DPEFT_FUZZ=ON -DPEFT_BUILD_TESTS=OFF -DPEFT_BUILD_BENCH=OFF -DPEFT_MPI=OFF "${launcher[@]}" \
    >/dev/null
fi
jobs=()
[ -z "${FUZZ_JOBS:-}" ] || jobs=(-j "$FUZZ_JOBS")
# Only the fuzz targets (and the part of the library they link, fuzz/CMakeLists.txt).
cmake --build "$build" "${jobs[@]}" --target "${targets[@]/#/fuzz_}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
crashes="$build/fuzz-crashes"
mkdir -p "$crashes"
status=0
for t in "${targets[@]}"; do
  mkdir -p "$work/$t/corpus" "$work/$t/cwd"
  log="$work/$t.log"
  # One thread: OpenMP regions would multiply the fuzzer's cost. The malloc / RSS limits catch a
  # reader that believes a hostile size. New inputs go to a scratch corpus; the seeds are read
  # only. Leaks are findings (libFuzzer's -detect_leaks is on by default). TMPDIR: the targets'
  # scratch folders (fuzz_util.h) go with the rest of $work.
  if (cd "$work/$t/cwd" && TMPDIR="$work/$t/cwd" OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 \
        UBSAN_OPTIONS=print_stacktrace=1 "$build/fuzz/fuzz_$t" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$crashes/$t-" \
        "$work/$t/corpus" "$root/fuzz/seeds/$t") >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    seeds=$(find "fuzz/seeds/$t" -type f | wc -l)
    # libFuzzer's last status line: edges covered, and the corpus it ended with (inputs/size).
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo '?')
    corp=$(grep -o 'corp: [0-9]*/[0-9]*[A-Za-z]*' "$log" | tail -1 | cut -d' ' -f2 || echo '?')
    echo "fuzz_$t: $seeds seeds, $runs executions in $seconds s ($rate/s), corpus $corp," \
      "$cov edges, no finding"
  else
    echo "fuzz_$t: FINDING (the input is in $crashes/; the end of the log follows)"
    grep -v '^#[0-9]* *\(NEW\|REDUCE\|pulse\|INITED\|RELOAD\)' "$log" | tail -60
    status=1
  fi
done
exit $status
