# cmake -DINPUT=corpus.txt -DOUTPUT=tiny_corpus.cpp -P embed_corpus.cmake
# Writes a C++ source defining bouquet::gpu::tiny_corpus() over INPUT's bytes. A byte array rather
# than a string literal: any byte is safe in it, and compilers cap literal lengths.
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REPEAT "0x[0-9a-f][0-9a-f]," 16 row)  # CMake regexes have no {n}
string(REGEX REPLACE "(${row})" "\\1\n" bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp" "// Generated from tokenizer/tiny/corpus.txt by tokenizer/tiny/embed_corpus.cmake; do not edit.
#include <string_view>

namespace bouquet::gpu {
namespace {
const unsigned char kTinyCorpus[${size} + 1] = {
${bytes}0};
}  // namespace

std::string_view tiny_corpus() {
  return {reinterpret_cast<const char*>(kTinyCorpus), ${size}};
}

}  // namespace bouquet::gpu
")
# Only touch OUTPUT when its contents change, so an unchanged corpus recompiles nothing.
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUTPUT}.tmp" "${OUTPUT}")
file(REMOVE "${OUTPUT}.tmp")
