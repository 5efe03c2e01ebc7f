# bench_cli.cmake: ln-bench end to end at the smallest shape (B = 1,
# n = 64, one repeat, no warm-up): the table run must print the forward,
# its per-op profile, the GEMM section with both timings (one call and a
# finish, and back to back) and a one-float kernel's launch cost, and
# --json must carry the same fields that bench/compare.py reads, with
# or without a profile. Speed is
# not judged here (bench/, README).
# Included by tests/CMakeLists.txt.
if(TARGET ln-bench)
  set(LN_BENCH_ARGS --batch 1 --n 64 --repeats 1 --warmup 0)
  # A pass regex ignores the exit code: sanitizer reports fail the tests
  # by their text (the sanitizer build runs them too, .ci/hardening).
  set(LN_BENCH_FAIL "ERROR: [A-Za-z]+Sanitizer|runtime error:")
  add_test(NAME bench_cli_table COMMAND ln-bench ${LN_BENCH_ARGS})
  set_tests_properties(bench_cli_table PROPERTIES ENVIRONMENT "${LN_TEST_ENV}" TIMEOUT 600
    FAIL_REGULAR_EXPRESSION "${LN_BENCH_FAIL}"
    PASS_REGULAR_EXPRESSION "Encoder forward.*Profile B=1 n=64.*gemm +ln_linear +64x832x384.*stream ms +calls.*64 +64 +384 +1 +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9.]+  S = u u\\^T.*A one-float kernel: [0-9.]+ us with a finish after each, [0-9.]+ us queued back to back")
  add_test(NAME bench_cli_json COMMAND ln-bench ${LN_BENCH_ARGS} --json)
  set_tests_properties(bench_cli_json PROPERTIES ENVIRONMENT "${LN_TEST_ENV}" TIMEOUT 600
    FAIL_REGULAR_EXPRESSION "${LN_BENCH_FAIL}"
    PASS_REGULAR_EXPRESSION "\"tool\": \"ln-bench\".*\"shapes\".*\"categories_ms\".*\"gemm\".*\"stream_ms\": [0-9.]+.*\"stream_calls\": [0-9]+.*\"launch_us\": {.*\"with_finish\": [0-9.]+")
  # Without a profile the shape is still reported, its profile null (it
  # once vanished from the JSON: NaN medians).
  add_test(NAME bench_cli_json_unprofiled
           COMMAND ln-bench ${LN_BENCH_ARGS} --profile-runs 0 --no-gemm --json)
  set_tests_properties(bench_cli_json_unprofiled PROPERTIES ENVIRONMENT "${LN_TEST_ENV}"
    TIMEOUT 600 FAIL_REGULAR_EXPRESSION "${LN_BENCH_FAIL}"
    PASS_REGULAR_EXPRESSION "\"shapes\": \\[.*\"batch\": 1,.*\"encode_device_ms\": [0-9.]+.*\"profile\": null")
  # --config takes a file as well as the JSON itself; the model it makes is
  # the file's (ln-bench prints the config it runs).
  file(WRITE ${CMAKE_CURRENT_BINARY_DIR}/bench_small_config.json
       "{\"d_model\": 192, \"scales\": [48, 96, 192], \"head_dim\": 16}\n")
  add_test(NAME bench_cli_config_file
           COMMAND ln-bench --batch 1 --n 8 --repeats 1 --warmup 0 --profile-runs 0 --no-gemm
                   --config ${CMAKE_CURRENT_BINARY_DIR}/bench_small_config.json)
  set_tests_properties(bench_cli_config_file PROPERTIES ENVIRONMENT "${LN_TEST_ENV}"
    TIMEOUT 600 FAIL_REGULAR_EXPRESSION "${LN_BENCH_FAIL}"
    PASS_REGULAR_EXPRESSION "config {\"d_model\": 192, .*\"scales\": \\[48, 96, 192\\]}.*Encoder forward.*\n +1 +8 +[0-9.]+ +[0-9.]+")
  # Bad numbers are refused by name before any device work: strtoull once
  # read "-5" as 2^64 - 5 and ln-bench died in malloc with an empty message.
  add_test(NAME bench_cli_rejects_negative_n COMMAND ln-bench --n -5)
  set_tests_properties(bench_cli_rejects_negative_n PROPERTIES
    PASS_REGULAR_EXPRESSION "--n \"-5\": want up to 16 integers in 1\\.\\.16777216")
  add_test(NAME bench_cli_rejects_bad_seed COMMAND ln-bench --seed 12abc)
  set_tests_properties(bench_cli_rejects_bad_seed PROPERTIES
    PASS_REGULAR_EXPRESSION "--seed \"12abc\": want an integer")
endif()
