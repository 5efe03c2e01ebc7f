#!/usr/bin/env bash
# atomic_kill.sh: kill ln-tune while it writes the tuning cache and find
# the previous cache intact (every file ln-cl writes goes through
# ln_file_write_atomic: temporary file, fsync, rename). Run by CTest
# (tests/atomic_kill.cmake) as: atomic_kill.sh LN_TUNE WORK_DIR
#  1. ln-tune tunes one small shape into a fresh cache: the previous file.
#  2. ln-tune --redo again, with LN_TEST_PAUSE_BEFORE_RENAME making the
#     tuning-file write stop between writing its temporary and the rename;
#     SIGKILL it there.
#  3. The tuning file is byte-identical to step 1's and still valid
#     (ln-tune --show reads it back, 3 entries); the killed writer's
#     temporary is left beside it and ignored.
set -euo pipefail
tune=$1 work=$2
rm -rf "$work"
mkdir -p "$work"
export LN_CACHE_DIR=$work/cache
"$tune" --shapes 1x64 --budget 5 --quick >"$work/first.log" 2>&1 ||
  { cat "$work/first.log"; echo "FAIL: the first ln-tune run failed"; exit 1; }
file=$(find "$LN_CACHE_DIR/tuning" -name '*.json' | head -1)
[ -n "$file" ] || { echo "FAIL: ln-tune wrote no tuning file"; exit 1; }
cp "$file" "$work/before.json"

LN_TEST_PAUSE_BEFORE_RENAME="600000:/tuning/" \
  "$tune" --shapes 1x64 --budget 5 --quick --redo >"$work/second.log" 2>&1 &
pid=$!
for _ in $(seq 1200); do   # up to 120 s for the tuner to reach its first write
  grep -q "LN_TEST_PAUSE_BEFORE_RENAME: wrote .*/tuning/" "$work/second.log" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "LN_TEST_PAUSE_BEFORE_RENAME: wrote" "$work/second.log"; then
  kill -9 "$pid" 2>/dev/null || true
  cat "$work/second.log"
  echo "FAIL: the second ln-tune run never reached its tuning-file rename"
  exit 1
fi
kill -9 "$pid"
wait "$pid" 2>/dev/null && { echo "FAIL: ln-tune was not killed"; exit 1; }
grep "LN_TEST_PAUSE_BEFORE_RENAME" "$work/second.log"

cmp "$file" "$work/before.json" ||
  { echo "FAIL: the tuning file changed although its writer was killed before the rename"; exit 1; }
left=$(find "$LN_CACHE_DIR/tuning" -name '*.json.tmp-*' | wc -l)
echo "tuning file intact; $left temporary file(s) of the killed writer left beside it"
[ "$left" -ge 1 ] || { echo "FAIL: the killed writer left no temporary (did it pause before writing?)"; exit 1; }
"$tune" --show >"$work/show.log" 2>&1 || { cat "$work/show.log"; echo "FAIL: --show refused the file"; exit 1; }
grep -q "3 entries" "$work/show.log" || { cat "$work/show.log"; echo "FAIL: --show did not find the 3 entries"; exit 1; }
if grep -q "warning" "$work/show.log"; then cat "$work/show.log"; echo "FAIL: the file was read with a warning"; exit 1; fi
echo "PASS"
