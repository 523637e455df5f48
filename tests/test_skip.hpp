// Visible skips for the Catch2 v2 tests (v2 has no SKIP). ASSISTGEN_SKIP
// prints a warning carrying the marker "ASSISTGEN_TEST_SKIPPED" and leaves the
// test case; the ctest entries of tests/CMakeLists.txt (and conformance/, and
// the HPU tests) have SKIP_REGULAR_EXPRESSION set to that marker, so ctest
// reports the case as "Skipped" in its log and summary instead of "Passed".
//
// ctest marks the whole entry skipped whatever else it printed, so a skip must
// come before any assertion of its TEST_CASE (and never follow a GENERATE
// whose other values assert): put what cannot run in a test case of its own.
#pragma once

#include <catch2/catch.hpp>

#define ASSISTGEN_SKIP(reason)                      \
  do {                                              \
    WARN("ASSISTGEN_TEST_SKIPPED: " << reason);     \
    return;                                         \
  } while (0)
