#!/usr/bin/env bash
# scripts/demo.sh end to end, and its promise never to delete what it did not write:
#  1. a folder holding a user's file is refused (exit 1) and the file is untouched;
#  2. a fresh folder gets the whole demo: the summary shows the tuned habit (a story about Pip that
#     ends at the end-of-story token) and a merged model writing the same story; adapter, loss.svg
#     and merged model written;
#  3. a second run into the same folder replaces the demo's outputs (and those an earlier version
#     of the demo wrote) and keeps a user's file there.
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
grep -A3 "with the adapter:$" "$tmp/run1.log" | grep -q "ended at the end-of-story token" ||
  fail "the tuned story did not end at the end-of-story token: $(cat "$tmp/run1.log")"
grep -A3 "with the adapter:$" "$tmp/run1.log" | grep -q "Once upon a time, there was a little dragon named Pip" ||
  fail "the adapter did not teach the new character: $(cat "$tmp/run1.log")"
grep -A3 "base model:$" "$tmp/run1.log" | grep -q "little girl named Lily" || fail "the base story changed"
grep -q "merged model: *the same story as base + adapter" "$tmp/run1.log" || fail "merged model differs"
for f in lora/adapter_config.json lora/adapter_model.safetensors lora/loss.svg merged/model.safetensors \
  merged/generation_config.json; do
  [ -s "$tmp/demo/$f" ] || fail "missing $f"
done

echo mine > "$tmp/demo/mine.txt"
mkdir "$tmp/demo/base" && echo old > "$tmp/demo/base/config.json"  # an earlier demo's output
"$root/scripts/demo.sh" "$tmp/demo" > "$tmp/run2.log" 2>&1 || fail "second run: $(tail -5 "$tmp/run2.log")"
[ "$(cat "$tmp/demo/mine.txt")" = mine ] || fail "the rerun deleted a user's file"
[ -s "$tmp/demo/merged/model.safetensors" ] || fail "rerun wrote no merged model"
[ ! -e "$tmp/demo/base" ] || fail "the rerun kept an earlier demo's output"
echo "demo: refuses a foreign folder, runs, reruns in place keeping other files"
