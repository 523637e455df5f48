#error "a public assistgen header includes utf8proc.h: it is a private dependency (docs/packaging.md)"
