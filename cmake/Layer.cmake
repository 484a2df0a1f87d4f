# bouquet_layer(NAME DIR LINKS...) builds one layer library from every .cpp under DIR, with the
# repository root as the include root ("core/x.h"). A layer with no sources yet is an interface.
function(bouquet_layer name dir)
  file(GLOB_RECURSE sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/${dir}/*.cpp)
  if(sources)
    add_library(${name} STATIC ${sources})
    target_include_directories(${name} PUBLIC ${CMAKE_SOURCE_DIR})
    target_compile_options(${name} PRIVATE -Wall -Wextra -Wno-unused-parameter)
    target_link_libraries(${name} PUBLIC ${ARGN})
  else()
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${CMAKE_SOURCE_DIR})
    target_link_libraries(${name} INTERFACE ${ARGN})
  endif()
endfunction()

# bouquet_tests(LAYER LINKS...) builds tests/LAYER/*_test.cpp into one GoogleTest binary labelled
# LAYER, and tests/LAYER/*_slow_test.cpp into a second one labelled LAYER and slow, so that
# `ctest -LE slow` gives the quick loop.
function(bouquet_tests layer)
  file(GLOB all CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/${layer}/*_test.cpp)
  file(GLOB slow CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/${layer}/*_slow_test.cpp)
  file(GLOB support CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/${layer}/support/*.cpp)
  set(quick ${all})
  if(slow)
    list(REMOVE_ITEM quick ${slow})
  endif()
  foreach(kind quick slow)
    if(NOT ${kind})
      continue()
    endif()
    set(target ${layer}_tests)
    set(labels ${layer})
    if(kind STREQUAL "slow")
      set(target ${layer}_slow_tests)
      list(APPEND labels slow)
    endif()
    add_executable(${target} ${${kind}} ${support})
    target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR})
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
    target_link_libraries(${target} PRIVATE ${ARGN} GTest::gtest GTest::gmock GTest::gtest_main)
    target_compile_definitions(${target} PRIVATE
      BOUQUET_SOURCE_DIR="${CMAKE_SOURCE_DIR}" BOUQUET_BINARY="$<TARGET_FILE:bouquet>")
    gtest_discover_tests(${target} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${labels}")
    if(kind STREQUAL "slow")
      # gtest_discover_tests hands PROPERTIES to its script on a command line that splits lists
      # ("LABELS;net;slow" loses "slow"), so the two labels are set by a file ctest reads after
      # the discovered tests.
      set(label_file ${CMAKE_CURRENT_BINARY_DIR}/${target}_labels.cmake)
      file(WRITE ${label_file} "if(${target}_TESTS)\n  set_tests_properties(\${${target}_TESTS} PROPERTIES LABELS \"${layer};slow\")\nendif()\n")
      set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${label_file})
    endif()
  endforeach()
endfunction()
