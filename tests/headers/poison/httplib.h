#error "a public assistgen header includes httplib.h: cpp-httplib is private to assistgen::server (src/server/, docs/server.md)"
