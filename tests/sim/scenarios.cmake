# Every scenarios/NAME.yaml is a test: `bouquet sim` must print exactly scenarios/NAME.expected.
file(GLOB scenario_files CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/scenarios/*.yaml)
# The fidelity scenarios describe this machine through a device file scripts/fidelity.sh measures
# at run time (none is committed): they run through that script and net_fidelity_smallest_row.
list(FILTER scenario_files EXCLUDE REGEX "/fidelity-[^/]*\\.yaml$")
foreach(scenario ${scenario_files})
  get_filename_component(name ${scenario} NAME_WE)
  add_test(NAME scenario_${name}
    COMMAND ${CMAKE_COMMAND} -DBOUQUET=$<TARGET_FILE:bouquet> -DSCENARIO=scenarios/${name}.yaml
            -DEXPECTED=scenarios/${name}.expected -DACTUAL_DIR=${CMAKE_CURRENT_BINARY_DIR}
            -P ${CMAKE_CURRENT_LIST_DIR}/check_scenario.cmake
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
  set_tests_properties(scenario_${name} PROPERTIES LABELS "sim;scenario" TIMEOUT 600)
endforeach()

# sim_tests also runs `bouquet sim` as a user would (sim_command_test.cpp).
if(TARGET sim_tests)
  add_dependencies(sim_tests bouquet)
endif()
