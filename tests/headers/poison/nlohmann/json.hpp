#error "a public assistgen header includes nlohmann/json.hpp: it is a private dependency (docs/packaging.md)"
