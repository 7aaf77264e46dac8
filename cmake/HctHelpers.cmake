# hct_component(NAME <name> [CUDA] DEPS <targets...> PRIVATE_DEPS <targets...>)
# Builds library hct_<name> (alias hct::<name>) from <name>/*.cc (and *.cu when CUDA is on),
# excluding <name>/tool/ (CLI mains).
function(hct_component)
  cmake_parse_arguments(A "" "NAME" "DEPS;PRIVATE_DEPS" ${ARGN})
  file(GLOB _src CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cc
       ${CMAKE_CURRENT_SOURCE_DIR}/detail/*.cc)
  if(HCT_WITH_CUDA)
    file(GLOB _cu CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*.cu
         ${CMAKE_CURRENT_SOURCE_DIR}/detail/*.cu)
    list(APPEND _src ${_cu})
  endif()
  add_library(hct_${A_NAME} ${_src})
  add_library(hct::${A_NAME} ALIAS hct_${A_NAME})
  set_target_properties(hct_${A_NAME} PROPERTIES EXPORT_NAME ${A_NAME} OUTPUT_NAME hct_${A_NAME})
  target_include_directories(hct_${A_NAME} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${PROJECT_SOURCE_DIR})
  target_link_libraries(hct_${A_NAME} PUBLIC ${A_DEPS} PRIVATE ${A_PRIVATE_DEPS})
  if(HCT_WITH_CUDA)
    target_compile_definitions(hct_${A_NAME} PUBLIC HCT_WITH_CUDA=1)
    set_target_properties(hct_${A_NAME} PROPERTIES CUDA_SEPARABLE_COMPILATION OFF)
  endif()
  target_compile_options(hct_${A_NAME} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter>)
  install(TARGETS hct_${A_NAME} EXPORT hctTargets
          ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endfunction()

# hct_tool(NAME <exe> SOURCE <file.cc> DEPS <targets...>): a command-line tool over the
# component libraries `DEPS`, with the shared CLI code (hct_cli, tools/common) and
# Boost.Program_options; installed to bin/.
function(hct_tool)
  cmake_parse_arguments(A "" "NAME;SOURCE" "DEPS" ${ARGN})
  add_executable(${A_NAME} ${A_SOURCE})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS} Boost::program_options hct_cli)
  target_include_directories(${A_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
  install(TARGETS ${A_NAME} RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endfunction()

# One GoogleTest executable `target` of `sources`, labelled `labels`, linked with `deps`.
function(_hct_test_executable target sources labels deps)
  add_executable(${target} ${sources})
  target_link_libraries(${target} PRIVATE ${deps} GTest::gtest GTest::gtest_main)
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR} ${PROJECT_SOURCE_DIR}/tests)
  target_compile_definitions(${target} PRIVATE
    HCT_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data"
    HCT_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    HCT_BINARY_DIR="${PROJECT_BINARY_DIR}")
  gtest_discover_tests(${target} PROPERTIES LABELS "${labels}" DISCOVERY_TIMEOUT 60)
endfunction()

# hct_tests(NAME <name> DEPS <targets...>): one executable of <dir>/*_test.cc for CPU tests and,
# when CUDA is on, one of <dir>/*_gpu_test.cc|.cu labelled `gpu` (they GTEST_SKIP without a GPU).
function(hct_tests)
  cmake_parse_arguments(A "" "NAME" "DEPS" ${ARGN})
  include(GoogleTest)
  file(GLOB _cpu CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_test.cc)
  list(FILTER _cpu EXCLUDE REGEX "_gpu_test\\.cc$")
  if(_cpu)
    _hct_test_executable(hct_${A_NAME}_tests "${_cpu}" "cpu;${A_NAME}" "${A_DEPS}")
  endif()
  if(HCT_WITH_CUDA)
    file(GLOB _gpu CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/*_gpu_test.cc
         ${CMAKE_CURRENT_SOURCE_DIR}/*_gpu_test.cu)
    if(_gpu)
      _hct_test_executable(hct_${A_NAME}_gpu_tests "${_gpu}" "gpu;${A_NAME}"
                           "${A_DEPS};CUDA::cudart")
    endif()
  endif()
endfunction()
