# atomic_kill.cmake: SIGKILL ln-tune between writing its tuning file's
# temporary and renaming it (LN_TEST_PAUSE_BEFORE_RENAME, a test hook of
# ln_file_write_atomic in src/safetensors.c); the previous tuning file must
# be byte-identical and valid afterwards (tests/atomic_kill.sh).
if(TARGET ln-tune)
  add_test(NAME atomic_write_survives_kill
           COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/atomic_kill.sh $<TARGET_FILE:ln-tune>
                   ${CMAKE_BINARY_DIR}/atomic-kill)
  set_tests_properties(atomic_write_survives_kill PROPERTIES
    ENVIRONMENT "POCL_CACHE_DIR=${CMAKE_BINARY_DIR}/pocl-cache"
    PASS_REGULAR_EXPRESSION "PASS" FAIL_REGULAR_EXPRESSION "FAIL:"
    TIMEOUT 600)
endif()
