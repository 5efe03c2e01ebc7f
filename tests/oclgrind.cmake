# oclgrind.cmake: every kernel family of ln-cl (linear, norm, positional;
# attention has tests/attention_oclgrind.cmake) on a tiny case
# (tests/test_oclgrind_cases.c) under Oclgrind's simulator with its
# data-race, uninitialised-value and API checkers. A test fails on any
# Oclgrind report, whatever the runner's own exit code: every report
# carries one of the texts below (Oclgrind 21.10's messages: kernel
# diagnostics name "Kernel:", API misuse says "OpenCL runtime error").
# The CLBlast GEMMs of ln_linear run in the simulator too.
find_program(LN_OCLGRIND oclgrind)
if(LN_OCLGRIND AND TARGET test_oclgrind_cases)
  set(LN_OCLGRIND_REPORT
    "Oclgrind - OpenCL runtime error;OCLGRIND FATAL ERROR;Kernel: ;Invalid read;Invalid write;data race;Uninitialized;Work-group divergence;Unaligned address")
  foreach(family linear norm positional)
    add_test(NAME oclgrind_${family}
             COMMAND ${LN_OCLGRIND} --data-races --uninitialized --check-api
                     $<TARGET_FILE:test_oclgrind_cases>)
    # CK_FORK=no: the simulator runs the test in its own process, and a
    # crash must fail the test rather than be caught by Check's fork.
    # LN_TUNE_CACHE=off: kernels are built from source by the simulator,
    # never taken from (or stored in) the binary cache.
    set_tests_properties(oclgrind_${family} PROPERTIES
      ENVIRONMENT "${LN_TEST_ENV};CK_FORK=no;CK_RUN_CASE=${family};LN_TUNE_CACHE=off"
      FAIL_REGULAR_EXPRESSION "${LN_OCLGRIND_REPORT}"
      LABELS oclgrind
      TIMEOUT 600)
  endforeach()
endif()
