# Script mode: install the build in BUILD_DIR into a scratch prefix (WORK_DIR/
# prefix), build a consumer against it, run it. Used by the package tests and
# by the out-of-tree custom backend example.
#   MODE cmake (default): configure the project in SOURCE_DIR with
#     find_package(assistgen), build it, run its executable EXE (default:
#     consumer) with the optional argument ARG.
#   MODE pkg-config: compile SOURCE_DIR/main.cpp with CXX and nothing but the
#     flags of `pkg-config --cflags --libs assistgen`, run it.
# FORBID: names that must not appear in the installed CMake package files
# (private dependencies a consumer must not be asked for).
# EXPECT_SHARED ON additionally checks that the consumer loads the shared
# libraries (a NEEDED entry with the SOVERSION).
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}")
  endif()
  message(STATUS "${out}")
  set(step_output "${out}" PARENT_SCOPE)
endfunction()
step(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
file(GLOB_RECURSE pkg_files ${prefix}/*/cmake/assistgen/*.cmake)
if(NOT pkg_files)
  message(FATAL_ERROR "no CMake package files installed under ${prefix}")
endif()
foreach(f ${pkg_files})
  file(STRINGS ${f} lines REGEX "^[^#]")  # code, not comments
  string(JOIN "\n" text ${lines})
  foreach(name ${FORBID})
    string(FIND "${text}" "${name}" at)
    if(NOT at EQUAL -1)
      message(FATAL_ERROR "${f} names ${name}: consumers must not be asked for this private dependency")
    endif()
  endforeach()
endforeach()
if(NOT EXE)
  set(EXE consumer)
endif()
if(NOT MODE OR MODE STREQUAL "cmake")
  step(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -G ${GENERATOR}
       -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${prefix})
  step(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
  set(exe ${WORK_DIR}/build/${EXE})
elseif(MODE STREQUAL "pkg-config")
  file(GLOB_RECURSE pc_files ${prefix}/*/assistgen.pc)
  list(LENGTH pc_files n)
  if(NOT n EQUAL 1)
    message(FATAL_ERROR "expected one installed assistgen.pc under ${prefix}, found: ${pc_files}")
  endif()
  get_filename_component(pc_dir ${pc_files} DIRECTORY)
  set(ENV{PKG_CONFIG_PATH} ${pc_dir})
  step(pkg-config --cflags --libs assistgen)
  string(STRIP "${step_output}" flags)
  separate_arguments(flags UNIX_COMMAND "${flags}")
  file(MAKE_DIRECTORY ${WORK_DIR}/build)
  set(exe ${WORK_DIR}/build/${EXE})
  step(${CXX} -std=c++20 -O1 ${SOURCE_DIR}/main.cpp -o ${exe} ${flags})
else()
  message(FATAL_ERROR "MODE must be cmake or pkg-config, not ${MODE}")
endif()
if(EXPECT_SHARED)
  step(readelf -d ${exe})
  # (libassistgen comes in through libassistgen_cpu: Debian links --as-needed.)
  if(NOT step_output MATCHES "NEEDED[^\n]*\\[libassistgen_cpu\\.so\\.${SOVERSION}\\]")
    message(FATAL_ERROR "${exe} does not load libassistgen_cpu.so.${SOVERSION}:\n${step_output}")
  endif()
  # The installed libraries' directory is not on the loader's path.
  file(GLOB_RECURSE so_files ${prefix}/*/libassistgen.so.${SOVERSION})
  get_filename_component(libdir "${so_files}" DIRECTORY)
  set(ENV{LD_LIBRARY_PATH} ${libdir})
endif()
step(${exe} ${ARG})
