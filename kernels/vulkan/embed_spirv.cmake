# cmake -DSPV=in.spv -DHDR=out.h -DNAME=x -P embed_spirv.cmake
# Writes the SPIR-V words as a uint32_t array (SPIR-V is a stream of little-endian words; we
# read the bytes and reassemble them so the array is right on any host). Whole-string regular
# expressions, not a loop of substrings: the loop copied the string per word, minutes for a
# 200 KB shader.
file(READ ${SPV} hex HEX)
string(REGEX REPLACE "(..)(..)(..)(..)" "0x\\4\\3\\2\\1u," body "${hex}")
string(REGEX REPLACE "((0x........u,)(0x........u,)(0x........u,)(0x........u,)(0x........u,)(0x........u,)(0x........u,)(0x........u,))" "\\1\n" body "${body}")
file(WRITE ${HDR} "// Generated from ${NAME}.comp by embed_spirv.cmake; do not edit.\n#pragma once\n#include <cstdint>\ninline constexpr uint32_t k_spv_${NAME}[] = {\n${body}};\n")
