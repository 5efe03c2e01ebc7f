#!/usr/bin/env bash
# fuzz/run.sh: builds the libFuzzer harnesses of ln-cl's file readers
# (fuzz/fuzz_<name>.c over fuzz/targets.c, with clang's
# -fsanitize=fuzzer,address,undefined) and runs each for a bounded time on
# its seed corpus (fuzz/corpus/<name>/, with fuzz/dict/<name>.dict).
# Prints executions and crashes per harness; exits 1 on any crash, leak,
# sanitizer report or broken property (ln_fuzz_* returning a reason).
#
#   fuzz/run.sh [seconds per harness (default 60)] [harness ...]
#   LN_FUZZ_BUILD=dir   build and work directory (default build-fuzz)
#   CC=clang-14         the compiler (default: clang, else clang-14)
#   CI=true             warnings are errors (as in the main build)
#
# Readers need no device, but the library's files call one another, so all
# of src/*.c is compiled in (with the embedded kernels, whose hash keys the
# tuning file) and linked with OpenCL and CLBlast. A crasher is kept as a
# regression test by copying it to tests/data/crashers/<name>/ (read by
# tests/test_fuzz_regressions.c) once fixed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
harnesses=("$@")
[ ${#harnesses[@]} -gt 0 ] || harnesses=(safetensors npy config tune_cache)
build=${LN_FUZZ_BUILD:-build-fuzz}
cc=${CC:-}
if [ -z "$cc" ] || ! "$cc" --version 2>/dev/null | grep -q clang; then
  cc=$(command -v clang || command -v clang-14 || true)
fi
[ -n "$cc" ] || { echo "fuzz/run.sh: clang is needed (apt-get install clang-14 libclang-rt-14-dev)" >&2; exit 2; }

mkdir -p "$build/obj" "$build/tmp" "$build/generated"
cmake -DOUT="$build/generated/kernels_embedded.c" \
      "-DSOURCES=$(ls cl/*.cl | sort | sed "s|^|$PWD/|" | paste -sd,)" \
      -P cmake/embed_cl.cmake

# Warnings are errors where the main build's are (CI=true), here with clang.
cflags=(-std=c11 -D_POSIX_C_SOURCE=200809L -DCL_TARGET_OPENCL_VERSION=120
        -g -O1 -fno-omit-frame-pointer -Wall -Wextra
        -fsanitize=address,undefined -fno-sanitize-recover=undefined
        -Iinclude -Isrc -Ifuzz $(pkg-config --cflags jansson))
[ "${CI:-}" = true ] && cflags+=(-Werror)
libs=($(pkg-config --libs jansson) -lclblast -lOpenCL -lm -lpthread)
# The whole library (src/*.c, so new files need no edit here) plus the
# targets; only the readers run, but they call into neighbours.
sources=(src/*.c fuzz/targets.c "$build/generated/kernels_embedded.c")

# Library objects are instrumented for coverage but get no main.
objs=()
for s in "${sources[@]}"; do
  o="$build/obj/$(basename "${s%.c}").o"
  if [ ! -e "$o" ] || [ "$s" -nt "$o" ] || [ fuzz/run.sh -nt "$o" ] ||
     [ -n "$(find src fuzz -name '*.h' -newer "$o" -print -quit)" ]; then
    "$cc" "${cflags[@]}" -fsanitize=fuzzer-no-link -c "$s" -o "$o"
  fi
  objs+=("$o")
done

# The tune_cache target writes each input to a scratch file: tmpfs if any.
tmp="$PWD/$build/tmp"
[ -d /dev/shm ] && [ -w /dev/shm ] && tmp=/dev/shm

status=0
summary=()
for h in "${harnesses[@]}"; do
  [ -f "fuzz/fuzz_$h.c" ] || { echo "fuzz/run.sh: no harness fuzz/fuzz_$h.c" >&2; exit 2; }
  "$cc" "${cflags[@]}" -fsanitize=fuzzer "fuzz/fuzz_$h.c" "${objs[@]}" "${libs[@]}" \
        -o "$build/fuzz_$h"
  work="$build/corpus/$h" art="$build/artifacts/$h"
  mkdir -p "$work" "$art"
  log="$build/fuzz_$h.log"
  dict=()
  [ -f "fuzz/dict/$h.dict" ] && dict=(-dict="fuzz/dict/$h.dict")
  echo "== fuzz $h: ${seconds}s"
  # New inputs go to the work corpus (kept between runs), the committed
  # seeds are only read. One job: the CI machine has 2 cores.
  set +e
  TMPDIR="$tmp" "$build/fuzz_$h" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=2048 -malloc_limit_mb=1024 -print_final_stats=1 \
      -artifact_prefix="$art/" "${dict[@]}" "$work" "fuzz/corpus/$h" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  crashes=$(find "$art" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
            -o -name 'oom-*' \) | wc -l)
  line="$h: ${execs:-?} executions, $crashes crash(es), corpus $(ls "$work" | wc -l) inputs, exit $rc"
  summary+=("$line")
  echo "$line"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    status=1
    echo "---- last lines of $log:"
    tail -40 "$log"
    echo "---- artifacts in $art:"
    ls -la "$art"
  fi
done
echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
exit $status
