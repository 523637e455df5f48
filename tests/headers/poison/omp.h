#error "a public assistgen header includes omp.h: it is a private dependency (docs/packaging.md)"
