#error "a public assistgen header includes pcre2.h: it is a private dependency (docs/packaging.md)"
