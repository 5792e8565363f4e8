#!/usr/bin/env bash
# scripts/demo.sh end to end, and its promise never to delete what it did not write:
#  1. a folder holding a user's file is refused (exit 1) and the file is untouched;
#  2. a fresh folder gets the whole demo (summary printed, adapter and merged model written);
#  3. a second run into the same folder replaces the demo's outputs and keeps a user's file there.
# Usage: test_demo.sh PEFT_BINARY
set -euo pipefail
export PEFT="$1"
root="$(cd "$(dirname "$0")/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir "$tmp/user" && echo keep > "$tmp/user/notes.txt"
if "$root/scripts/demo.sh" "$tmp/user" > "$tmp/refused.log" 2>&1; then fail "a foreign folder was accepted"; fi
grep -q "not written by the demo" "$tmp/refused.log" || fail "no reason given: $(cat "$tmp/refused.log")"
[ "$(cat "$tmp/user/notes.txt")" = keep ] || fail "the user's file changed"
[ "$(ls -A "$tmp/user")" = notes.txt ] || fail "the demo wrote into a refused folder"

"$root/scripts/demo.sh" "$tmp/demo" > "$tmp/run1.log" 2>&1 || fail "first run: $(tail -5 "$tmp/run1.log")"
grep -q "peft.cpp demo finished" "$tmp/run1.log" || fail "no summary"
for f in lora/adapter_config.json lora/adapter_model.safetensors lora/loss.svg merged/model.safetensors; do
  [ -s "$tmp/demo/$f" ] || fail "missing $f"
done

echo mine > "$tmp/demo/mine.txt"
"$root/scripts/demo.sh" "$tmp/demo" > "$tmp/run2.log" 2>&1 || fail "second run: $(tail -5 "$tmp/run2.log")"
[ "$(cat "$tmp/demo/mine.txt")" = mine ] || fail "the rerun deleted a user's file"
[ -s "$tmp/demo/merged/model.safetensors" ] || fail "rerun wrote no merged model"
echo "demo: refuses a foreign folder, runs, reruns in place keeping other files"
