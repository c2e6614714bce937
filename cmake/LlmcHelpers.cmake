# llmc_add_test(NAME name SOURCES a.cpp b.cpp [FIXTURES f] [LIBS l])
# One GoogleTest binary per module; it runs as one CTest test so the fixtures it needs
# are made first.
function(llmc_add_test)
  cmake_parse_arguments(T "" "NAME" "SOURCES;FIXTURES;LIBS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE llmc GTest::gtest GTest::gtest_main llmc_warnings ${T_LIBS})
  llmc_instrument(${T_NAME})
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  set_tests_properties(${T_NAME} PROPERTIES
    ENVIRONMENT "LLMC_FIXTURES=${LLMC_FIXTURE_DIR};LLMC_SOURCE_DIR=${PROJECT_SOURCE_DIR}"
    TIMEOUT 600)
  if(T_FIXTURES)
    set_tests_properties(${T_NAME} PROPERTIES FIXTURES_REQUIRED "${T_FIXTURES}")
  endif()
endfunction()
