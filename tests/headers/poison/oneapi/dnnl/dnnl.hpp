#error "a public assistgen header includes oneDNN: oneDNN must stay in src/cpu/"
