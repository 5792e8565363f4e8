#!/usr/bin/env bash
# Runs every libFuzzer target of fuzz/ for SECONDS each (default 5: the CI smoke) and prints one
# line per target with its executions; exits 1 on the first crash, leak, sanitizer report, timeout
# or out-of-memory (the input that did it is kept in BUILD_DIR/fuzz-crashes/).
#   scripts/fuzz.sh [SECONDS] [BUILD_DIR]    (BUILD_DIR default build-fuzz; configured by it
#   with Clang and -DPEFT_FUZZ=ON when absent)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-5}"
build="${2:-build-fuzz}"
if [ ! -f "$build/build.ninja" ]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
    -DCMAKE_CXX_COMPILER=clang++ -DPEFT_FUZZ=ON -DPEFT_BUILD_TESTS=OFF -DPEFT_BUILD_BENCH=OFF
fi
targets=(safetensors hf_config adapter_config records yaml_config tokenizer_json
  tokenizer_vocab_txt tokenizer_spm)
cmake --build "$build" --target "${targets[@]/#/fuzz_}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
mkdir -p "$build/fuzz-crashes"
for t in "${targets[@]}"; do
  seeds="fuzz/seeds/$t"
  [ "$t" = tokenizer_spm ] && seeds="tests/assets/tokenizers/llama2-spm"
  mkdir -p "$work/$t"
  log="$work/$t.log"
  # One thread: OpenMP regions would multiply the fuzzer's cost; rss / malloc limits catch a
  # reader that believes a hostile size.
  if (cd "$work/$t" && OMP_NUM_THREADS=1 "$OLDPWD/$build/fuzz/fuzz_$t" -max_total_time="$seconds" \
        -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=20 -print_final_stats=1 \
        -artifact_prefix="$OLDPWD/$build/fuzz-crashes/$t-" \
        "$work/$t" "$OLDPWD/$seeds") >"$log" 2>&1; then
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    echo "fuzz_$t: $execs executions in ${seconds} s, no crash"
  else
    echo "fuzz_$t: FAILED (last lines of its log follow)"
    tail -40 "$log"
    status=1
  fi
done
exit $status
