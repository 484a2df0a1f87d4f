# Runs `bouquet sim SCENARIO` from the repository root and fails, showing a diff, when its output
# differs from EXPECTED. Regenerate expected files with scripts/regen-scenarios.sh.
execute_process(COMMAND ${BOUQUET} sim ${SCENARIO}
                OUTPUT_VARIABLE actual ERROR_VARIABLE errors RESULT_VARIABLE status)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "bouquet sim ${SCENARIO} exited with ${status}:\n${errors}")
endif()
file(READ ${EXPECTED} expected)
if(NOT actual STREQUAL expected)
  string(MD5 tag "${SCENARIO}")
  # Beside the build, never in the source tree (the test runs from the repository root).
  set(actual_file ${ACTUAL_DIR}/scenario-${tag}.actual)
  file(WRITE ${actual_file} "${actual}")
  execute_process(COMMAND diff -u ${EXPECTED} ${actual_file} OUTPUT_VARIABLE diff)
  message(FATAL_ERROR "bouquet sim ${SCENARIO} differs from ${EXPECTED} "
                      "(scripts/regen-scenarios.sh regenerates it for review):\n${diff}")
endif()
message(STATUS "${SCENARIO}: output matches ${EXPECTED}\n${errors}")
