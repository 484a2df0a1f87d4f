# Fails if any file under core/ reaches for the world instead of taking it through a seam.
file(GLOB_RECURSE files ${CORE_DIR}/*.h ${CORE_DIR}/*.cpp)
set(forbidden
  "#include <torch" "#include <ATen" "#include <c10" "#include <asio" "#include <simgrid"
  "#include <opendht" "#include <thread>" "#include <random>" "#include <iostream>"
  "#include <fstream>" "steady_clock::now" "system_clock::now" "high_resolution_clock::now"
  "random_device" "std::rand(" "sleep_for" "getenv")
set(bad "")
foreach(f ${files})
  file(READ ${f} text)
  foreach(pattern ${forbidden})
    string(FIND "${text}" "${pattern}" at)
    if(NOT at EQUAL -1)
      list(APPEND bad "${f}: ${pattern}")
    endif()
  endforeach()
endforeach()
if(bad)
  list(JOIN bad "\n  " lines)
  message(FATAL_ERROR "core/ must do no I/O; found:\n  ${lines}")
endif()
list(LENGTH files n)
message(STATUS "core/ is I/O-free (${n} files checked)")
