#error "a public assistgen header includes nlohmann/json_fwd.hpp: it is a private dependency (docs/packaging.md)"
