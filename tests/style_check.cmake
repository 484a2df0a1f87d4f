# Fails when a C++ file of the repository differs from what clang-format makes of it (.clang-format
# at the root), naming the files; `clang-format -i FILE` fixes one. Skipped without clang-format.
find_program(CLANG_FORMAT NAMES clang-format)
if(NOT CLANG_FORMAT)
  message(STATUS "style check skipped: no clang-format (Debian's clang-format package has it)")
  return()
endif()
file(GLOB_RECURSE files RELATIVE ${SOURCE_DIR}
     ${SOURCE_DIR}/core/*.h ${SOURCE_DIR}/core/*.cpp ${SOURCE_DIR}/gpu/*.h ${SOURCE_DIR}/gpu/*.cpp
     ${SOURCE_DIR}/net/*.h ${SOURCE_DIR}/net/*.cpp ${SOURCE_DIR}/sim/*.h ${SOURCE_DIR}/sim/*.cpp
     ${SOURCE_DIR}/cli/*.h ${SOURCE_DIR}/cli/*.cpp ${SOURCE_DIR}/tokenizer/*.h ${SOURCE_DIR}/tokenizer/*.cpp
     ${SOURCE_DIR}/tests/*.h ${SOURCE_DIR}/tests/*.cpp ${SOURCE_DIR}/fuzz/*.h ${SOURCE_DIR}/fuzz/*.cpp)
set(unformatted "")
foreach(file ${files})
  execute_process(COMMAND ${CLANG_FORMAT} --dry-run --Werror ${file} WORKING_DIRECTORY ${SOURCE_DIR}
                  RESULT_VARIABLE status OUTPUT_QUIET ERROR_QUIET)
  if(NOT status EQUAL 0)
    list(APPEND unformatted ${file})
  endif()
endforeach()
if(unformatted)
  list(JOIN unformatted "\n  " names)
  message(FATAL_ERROR "not in the house style (clang-format -i fixes):\n  ${names}")
endif()
