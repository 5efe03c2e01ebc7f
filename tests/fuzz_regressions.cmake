# fuzz_regressions.cmake: links the fuzz targets (fuzz/targets.c, shared
# with the libFuzzer harnesses of fuzz/run.sh) into test_fuzz_regressions,
# which replays tests/data/crashers/ and the seed corpora through them.
if(TARGET test_fuzz_regressions)
  target_sources(test_fuzz_regressions PRIVATE ${CMAKE_SOURCE_DIR}/fuzz/targets.c)
  target_include_directories(test_fuzz_regressions PRIVATE ${CMAKE_SOURCE_DIR}/fuzz)
endif()
