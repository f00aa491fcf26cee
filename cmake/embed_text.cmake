# Writes OUTPUT, a C++ source defining `const char* const NAME` (in
# NAMESPACE) whose value is the text of INPUT, as a raw string literal.
# Run as: cmake -DINPUT=... -DOUTPUT=... -DNAME=... -DNAMESPACE=... -P embed_text.cmake
file(READ "${INPUT}" _text)
string(FIND "${_text}" ")madam_embed\"" _clash)
if(NOT _clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter )madam_embed\"")
endif()
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by cmake/embed_text.cmake; do not edit.\n"
  "namespace ${NAMESPACE} {\n"
  "extern const char* const ${NAME};\n"
  "const char* const ${NAME} = R\"madam_embed(${_text})madam_embed\";\n"
  "}  // namespace ${NAMESPACE}\n")
configure_file("${OUTPUT}.tmp" "${OUTPUT}" COPYONLY)
file(REMOVE "${OUTPUT}.tmp")
