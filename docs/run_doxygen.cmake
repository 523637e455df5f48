# Script mode: runs DOXYGEN on DOXYFILE with OUTPUT_DIRECTORY=OUT and
# WARN_AS_ERROR as given; fails (listing the warnings) when doxygen does, and
# when DOXYGEN is empty (doxygen was not found at configure time).
if(NOT DOXYGEN)
  message(FATAL_ERROR "doxygen was not found when this build was configured: the API reference "
                      "check cannot run (apt-get install doxygen, then re-run cmake)")
endif()
file(MAKE_DIRECTORY ${OUT})
file(READ ${DOXYFILE} config)
string(APPEND config "\nOUTPUT_DIRECTORY = ${OUT}\nWARN_AS_ERROR = ${WARN_AS_ERROR}\nWARN_LOGFILE = ${OUT}/warnings.log\n")
file(WRITE ${OUT}/Doxyfile.effective "${config}")
file(REMOVE ${OUT}/warnings.log)
execute_process(COMMAND ${DOXYGEN} ${OUT}/Doxyfile.effective RESULT_VARIABLE rc)
set(warnings "")
if(EXISTS ${OUT}/warnings.log)
  file(READ ${OUT}/warnings.log warnings)
endif()
if(NOT rc EQUAL 0 OR (NOT WARN_AS_ERROR STREQUAL "NO" AND NOT warnings STREQUAL ""))
  message(FATAL_ERROR "doxygen failed (${rc}):\n${warnings}")
elseif(NOT warnings STREQUAL "")
  message(WARNING "doxygen warnings:\n${warnings}")
endif()
