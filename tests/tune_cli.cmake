# tune_cli.cmake: ln-tune end to end (tune/): a tiny tuning run (one
# shape, the three ln-cl kernel families, 20 s budget) into a fresh
# LN_CACHE_DIR, whose attention job times every branch of a layer and S's
# GEMM under CLBlast's defaults (no GEMM sets in that file), and in which
# confirming a first-pass winner never fails to time; --show of the
# file it wrote, --export, --import into a second cache dir, a refused
# import of a file that is not a tuning file; a GEMM and attention run
# (CLBlast parameters at the 1x64 model's GEMMs, 150 s: two thirds of it
# for the GEMM job, CLBlast's default build plus one candidate's on the
# 2-core PoCL machine) that logs the candidate it measured, runs the GEMM
# job first and charges attention the S GEMM time that job measured, and
# whose three clblast-* entries and attention entry --show lists; then an
# attention-only rerun on that file, which times S under the file's
# CLBlast sets; an out-of-range --gemm-random is refused; --gemm-try takes
# a set as CLBlast's tuner writes it (PRECISION included) and names an
# unknown parameter; bench/clblast_best_sets.py picks the fastest matching
# sets from a CLBlast tuner log (an H200 excerpt, plus a faster row whose
# results did not match, which it must skip); with attention_rows forced,
# the attention job also times attention_tiles. Included by
# tests/CMakeLists.txt.
if(TARGET ln-tune)
  set(LN_TUNE_CLI_DIR ${CMAKE_BINARY_DIR}/tune-cli)
  set(LN_TUNE_CLI_ENV "POCL_CACHE_DIR=${CMAKE_BINARY_DIR}/pocl-cache"
                      "LN_CACHE_DIR=${LN_TUNE_CLI_DIR}/cache")
  add_test(NAME tune_cli_clean COMMAND ${CMAKE_COMMAND} -E rm -rf ${LN_TUNE_CLI_DIR})
  add_test(NAME tune_cli_run
           COMMAND ln-tune --shapes 1x64 --kernels layernorm,elementwise,attention --budget 20 --quick)
  add_test(NAME tune_cli_show COMMAND ln-tune --show)
  add_test(NAME tune_cli_export COMMAND ln-tune --export ${LN_TUNE_CLI_DIR}/exported.json)
  add_test(NAME tune_cli_import COMMAND ${CMAKE_COMMAND} -E env
           LN_CACHE_DIR=${LN_TUNE_CLI_DIR}/cache2 $<TARGET_FILE:ln-tune>
           --import ${LN_TUNE_CLI_DIR}/exported.json)
  add_test(NAME tune_cli_show_imported COMMAND ${CMAKE_COMMAND} -E env
           LN_CACHE_DIR=${LN_TUNE_CLI_DIR}/cache2 $<TARGET_FILE:ln-tune> --show)
  add_test(NAME tune_cli_import_refuses_bad
           COMMAND ln-tune --import ${CMAKE_SOURCE_DIR}/CMakeLists.txt)
  set_tests_properties(tune_cli_clean PROPERTIES FIXTURES_SETUP tune_cli_fresh)
  set_tests_properties(tune_cli_run PROPERTIES FIXTURES_REQUIRED tune_cli_fresh
                       FIXTURES_SETUP tune_cli_tuned ENVIRONMENT "${LN_TUNE_CLI_ENV}"
                       PASS_REGULAR_EXPRESSION "attention B1-n64: one layer's branches \\(64,128,256,384 wide\\); S's GEMM charged [0-9.]+ us per layer, timed here under CLBlast's defaults \\(no GEMM sets in the tuning file\\).*attention +B1-n64"
                       FAIL_REGULAR_EXPRESSION "timing failed while confirming|rejected: rel-L2"
                       TIMEOUT 300)
  # Every kernel of the run is in the file, and it validates.
  set_tests_properties(tune_cli_show PROPERTIES FIXTURES_REQUIRED tune_cli_tuned
                       ENVIRONMENT "${LN_TUNE_CLI_ENV}"
                       PASS_REGULAR_EXPRESSION "layernorm +B1-n64.*elementwise +B1-n64.*attention +B1-n64.*3 entries")
  set_tests_properties(tune_cli_export PROPERTIES FIXTURES_REQUIRED tune_cli_tuned
                       FIXTURES_SETUP tune_cli_exported ENVIRONMENT "${LN_TUNE_CLI_ENV}")
  set_tests_properties(tune_cli_import PROPERTIES FIXTURES_REQUIRED tune_cli_exported
                       FIXTURES_SETUP tune_cli_imported ENVIRONMENT "${LN_TUNE_CLI_ENV}"
                       PASS_REGULAR_EXPRESSION "imported 3 entries")
  set_tests_properties(tune_cli_show_imported PROPERTIES FIXTURES_REQUIRED tune_cli_imported
                       ENVIRONMENT "${LN_TUNE_CLI_ENV}" PASS_REGULAR_EXPRESSION "3 entries")
  set_tests_properties(tune_cli_import_refuses_bad PROPERTIES FIXTURES_REQUIRED tune_cli_tuned
                       ENVIRONMENT "${LN_TUNE_CLI_ENV}" WILL_FAIL TRUE)

  set(LN_TUNE_GEMM_ENV "POCL_CACHE_DIR=${CMAKE_BINARY_DIR}/pocl-cache"
                       "LN_CACHE_DIR=${LN_TUNE_CLI_DIR}/cache-gemm")
  add_test(NAME tune_cli_gemm
           COMMAND ln-tune --kernels gemm,attention --quick --shapes 1x64 --budget 150)
  add_test(NAME tune_cli_gemm_show COMMAND ln-tune --show)
  add_test(NAME tune_cli_gemm_then_attention
           COMMAND ln-tune --kernels attention --redo --quick --shapes 1x64 --budget 20)
  set_tests_properties(tune_cli_gemm PROPERTIES FIXTURES_REQUIRED tune_cli_fresh
                       FIXTURES_SETUP tune_cli_gemm_tuned ENVIRONMENT "${LN_TUNE_GEMM_ENV}"
                       PASS_REGULAR_EXPRESSION "gemm candidate 0: [0-9.]+ us against the default's [0-9.]+ .*Xgemm GEMMK=.*attention B1-n64: one layer's branches \\(64,128,256,384 wide\\); S's GEMM charged [0-9.]+ us per layer, as the GEMM job measured it.*gemm +64x384x64 .*clblast-Xgemm +B1-n64.*attention +B1-n64"
                       TIMEOUT 600)
  set_tests_properties(tune_cli_gemm_then_attention PROPERTIES
                       FIXTURES_REQUIRED tune_cli_gemm_shown ENVIRONMENT "${LN_TUNE_GEMM_ENV}"
                       PASS_REGULAR_EXPRESSION "S's GEMM charged [0-9.]+ us per layer, timed here under the tuning file's CLBlast sets"
                       FAIL_REGULAR_EXPRESSION "rejected: rel-L2"
                       TIMEOUT 300)
  add_test(NAME tune_cli_gemm_random_refused COMMAND ln-tune --kernels gemm --gemm-random 33)
  set_tests_properties(tune_cli_gemm_random_refused PROPERTIES
                       PASS_REGULAR_EXPRESSION "--gemm-random takes 0 to 32 sets, not '33'")
  add_test(NAME tune_cli_gemm_try_accepted COMMAND ln-tune --show --gemm-try
           "GEMMK=0 KREG=1 KWG=32 KWI=2 MDIMA=16 MDIMC=16 MWG=64 NDIMB=8 NDIMC=8 NWG=64 PRECISION=32 SA=1 SB=1 STRM=0 STRN=0 VWM=4 VWN=4")
  set_tests_properties(tune_cli_gemm_try_accepted PROPERTIES FIXTURES_REQUIRED tune_cli_tuned
                       ENVIRONMENT "${LN_TUNE_CLI_ENV}" PASS_REGULAR_EXPRESSION "3 entries")
  add_test(NAME tune_cli_gemm_try_refused COMMAND ln-tune --gemm-try "GEMMK=0 KWG=32 FOO=1")
  set_tests_properties(tune_cli_gemm_try_refused PROPERTIES
                       PASS_REGULAR_EXPRESSION "FOO is not a parameter of CLBlast's Xgemm")
  # With attention_rows running (LN_ATTENTION_KERNEL=rows: a GPU's
  # default, forced on PoCL), the attention job also times attention_tiles
  # and checks it against the default's output; its own cache directory.
  add_test(NAME tune_cli_attention_tiles COMMAND ${CMAKE_COMMAND} -E env
           LN_ATTENTION_KERNEL=rows LN_CACHE_DIR=${LN_TUNE_CLI_DIR}/cache-tiles
           $<TARGET_FILE:ln-tune> --kernels attention --quick --shapes 1x64 --budget 40)
  set_tests_properties(tune_cli_attention_tiles PROPERTIES FIXTURES_REQUIRED tune_cli_fresh
                       ENVIRONMENT "POCL_CACHE_DIR=${CMAKE_BINARY_DIR}/pocl-cache"
                       PASS_REGULAR_EXPRESSION "attention B1-n64 candidate [0-9]+: [0-9.]+ us against the default's [0-9.]+: S precomputed, tiles 64x32, attention_tiles"
                       FAIL_REGULAR_EXPRESSION "rejected: rel-L2"
                       TIMEOUT 300)
  find_program(LN_PYTHON3 python3)
  if(LN_PYTHON3)
    add_test(NAME clblast_best_sets
             COMMAND ${LN_PYTHON3} ${CMAKE_SOURCE_DIR}/bench/clblast_best_sets.py
                     ${CMAKE_SOURCE_DIR}/tests/data/clblast_tuner_sample.txt 2)
    set_tests_properties(clblast_best_sets PROPERTIES
                         PASS_REGULAR_EXPRESSION "35050.8 GFLOP/s: GEMMK=0 MWG=64 NWG=64 KWG=32 MDIMC=16 NDIMC=8 MDIMA=16 NDIMB=8 KWI=2 VWM=4 VWN=4 STRM=0 STRN=0 SA=1 SB=1 KREG=1.*11337.4 GFLOP/s: GEMMK=0 MWG=16 NWG=16"
                         FAIL_REGULAR_EXPRESSION "70101")
  endif()
  set_tests_properties(tune_cli_gemm_show PROPERTIES FIXTURES_REQUIRED tune_cli_gemm_tuned
                       FIXTURES_SETUP tune_cli_gemm_shown ENVIRONMENT "${LN_TUNE_GEMM_ENV}"
                       PASS_REGULAR_EXPRESSION "clblast-Xgemm +B1-n64.*clblast-XgemmDirect +B1-n64.*clblast-GemmRoutine +B1-n64.*attention +B1-n64.*4 entries")
endif()
