// Where x's integer form lies (matvec_dot.comp's top comment): per row of x, tiles_c tile
// columns of XQ_TILE_DIGIT_WORDS words of digits (4 plane widths x 4 units x 16 words), then
// XQ_TILE_META_WORDS words of {d / 256, sum x} (4 units) per tile column: XQ_TILE_WORDS words
// per tile column and row. Written by xq.glsl, read by matvec_dot.comp; the host sizes the
// buffer (vk_matmul.cpp kXqTileWords).
#ifndef SBITS_XQ_LAYOUT_GLSL
#define SBITS_XQ_LAYOUT_GLSL

const uint XQ_TILE_DIGIT_WORDS = 256u, XQ_TILE_META_WORDS = 8u;
const uint XQ_TILE_WORDS = XQ_TILE_DIGIT_WORDS + XQ_TILE_META_WORDS;

#endif
