# Script mode: configure and build the library alone as shared libraries
# (ASSISTGEN_SHARED=ON) from SOURCE_DIR in WORK_DIR, check VERSION/SOVERSION
# (file names and SONAME), then build and run the consumer against it through
# find_package and through pkg-config (run_consumer.cmake), checking that the
# installed CMake package names no private dependency at all.
file(REMOVE_RECURSE ${WORK_DIR})
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()
set(build ${WORK_DIR}/lib)
step(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${build} -G ${GENERATOR} -DCMAKE_BUILD_TYPE=Release
     -DASSISTGEN_SHARED=ON -DASSISTGEN_BUILD_TESTS=OFF -DASSISTGEN_BUILD_BENCHMARKS=OFF
     -DASSISTGEN_BUILD_EXAMPLES=OFF -DASSISTGEN_BUILD_CLI=OFF -DASSISTGEN_BUILD_HPU=ON)
step(${CMAKE_COMMAND} --build ${build})
set(prefix ${WORK_DIR}/prefix)
step(${CMAKE_COMMAND} --install ${build} --prefix ${prefix})
foreach(lib assistgen assistgen_cpu assistgen_hpu)
  file(GLOB_RECURSE real ${prefix}/*/lib${lib}.so.${VERSION})
  file(GLOB_RECURSE soname_link ${prefix}/*/lib${lib}.so.${SOVERSION})
  file(GLOB_RECURSE dev_link ${prefix}/*/lib${lib}.so)
  if(NOT real OR NOT soname_link OR NOT dev_link)
    message(FATAL_ERROR "lib${lib}: expected lib${lib}.so.${VERSION}, .so.${SOVERSION} and .so under ${prefix}")
  endif()
  step(readelf -d ${real})
  if(NOT step_output MATCHES "SONAME[^\n]*\\[lib${lib}\\.so\\.${SOVERSION}\\]")
    message(FATAL_ERROR "lib${lib}.so.${VERSION} has no SONAME lib${lib}.so.${SOVERSION}:\n${step_output}")
  endif()
endforeach()
foreach(mode cmake pkg-config)
  step(${CMAKE_COMMAND} -DBUILD_DIR=${build} -DSOURCE_DIR=${CONSUMER_DIR} -DWORK_DIR=${WORK_DIR}/${mode}
       -DGENERATOR=${GENERATOR} -DMODE=${mode} -DCXX=${CXX} -DEXPECT_SHARED=ON -DSOVERSION=${SOVERSION}
       "-DFORBID=DNNL::;dnnl;Eigen3;nlohmann;OpenCL;PkgConfig::;pcre2;utf8proc;OpenMP;Threads"
       -P ${CMAKE_CURRENT_LIST_DIR}/run_consumer.cmake)
  message(STATUS "${mode} consumer of the shared libraries:\n${step_output}")
endforeach()
