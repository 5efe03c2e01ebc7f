# attention_oclgrind.cmake: runs the small attention case of test_attention
# (Check case "oclgrind": S recomputed in the kernel, and the precomputed-S
# kernel reading an S uploaded from the host; no CLBlast) under Oclgrind, a
# strict OpenCL 1.2 simulator, checking for out-of-bounds accesses, data
# races, uninitialized values and API misuse, for attention_fused,
# attention_rows and attention_tiles; also one layer of two branches in one
# launch of each GPU kernel; the three kernels again with every launch sliced
# along dimensions 1 and 2 (global offsets). About 40 s on a 2-core CPU.
# Included by tests/CMakeLists.txt after the test_* targets exist.
find_program(LN_OCLGRIND oclgrind)
if(NOT LN_OCLGRIND)
  message(WARNING "oclgrind not found: the attention_oclgrind test is not added "
                  "(Debian package oclgrind; .ci/run installs it)")
else()
  add_test(NAME attention_oclgrind
           COMMAND ${LN_OCLGRIND} --data-races --uninitialized --check-api
                   $<TARGET_FILE:test_attention>)
  # Oclgrind reports and carries on, so its messages decide: "Invalid read
  # of size 4 at global memory address", "Read-write data race at local
  # memory address", "Controlflow depends on uninitialized value", "OpenCL
  # runtime error detected", "OCLGRIND FATAL ERROR" (an instruction it
  # cannot check). A failed Check assertion fails through the exit code.
  set_tests_properties(attention_oclgrind PROPERTIES
    ENVIRONMENT "${LN_TEST_ENV};CK_FORK=no;CK_RUN_CASE=oclgrind"
    FAIL_REGULAR_EXPRESSION "Invalid (read|write)|[Dd]ata race|[Uu]ninitiali[sz]ed|runtime error|OCLGRIND FATAL|errors generated|Work-group divergence|Kernel: "
    TIMEOUT 900)
endif()
