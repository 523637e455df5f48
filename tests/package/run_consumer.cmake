# Script mode: install this build into a scratch prefix, configure the project
# in SOURCE_DIR against it with find_package, build it, run its executable EXE
# (default: consumer) with the optional argument ARG. Used by the package test
# and by the out-of-tree custom backend example.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGN}")
  endif()
endfunction()
step(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
step(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -G ${GENERATOR}
     -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${prefix})
step(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
if(NOT EXE)
  set(EXE consumer)
endif()
step(${WORK_DIR}/build/${EXE} ${ARG})
