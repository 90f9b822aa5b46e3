# Helpers that give every Carewire target the same warnings and layout.
# Warnings are errors on our own code only; third-party headers come in as
# system includes through their imported targets.

set(CAREWIRE_WARNINGS
  -Wall -Wextra -Wpedantic -Werror
  -Wshadow -Wold-style-cast -Wcast-align
  -Woverloaded-virtual -Wimplicit-fallthrough -Wformat=2
  # Designated initializers may leave members at their defaults on purpose.
  -Wno-missing-field-initializers
  # GCC 12 reports Asio's coroutine frame allocator as a mismatched
  # new/delete at -O2 (a false positive in the compiler, not in Asio).
  -Wno-mismatched-new-delete)

# carewire_library(NAME SOURCES ... DEPS ...)
# Declares the library cw_NAME rooted at src/, so includes read "core/result.hpp".
function(carewire_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(cw_${name} STATIC ${ARG_SOURCES})
  target_include_directories(cw_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(cw_${name} PRIVATE ${CAREWIRE_WARNINGS})
  target_link_libraries(cw_${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

# carewire_test(NAME SOURCES ... DEPS ...)
# A GoogleTest binary registered with CTest, one CTest entry per test case.
function(carewire_test name)
  if(NOT CAREWIRE_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;ENV;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${CAREWIRE_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  # An empty ENVIRONMENT value would swallow the next property name.
  set(properties)
  if(ARG_ENV)
    list(APPEND properties ENVIRONMENT "${ARG_ENV}")
  endif()
  if(ARG_LABELS)
    list(APPEND properties LABELS "${ARG_LABELS}")
  endif()
  if(properties)
    gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES ${properties})
  else()
    gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60)
  endif()
endfunction()
