#pragma once

// Fixed-width big-endian integers, the one spelling of every byte shift in
// the store: keys (seq, offsets, dead-letter ids), meta values and the group
// format (group_format.hpp) all use these. Big-endian so that RocksDB's
// bytewise key order is numeric order.
//
// `put_beN` writes N/8 bytes at `out`; `get_beN` reads them at `in`;
// `append_beN` appends them to a string. REQUIRES: the bytes are there.

#include <cstddef>
#include <cstdint>
#include <string>

namespace herald::store::detail {

template <class Unsigned> void put_be(char* out, Unsigned x) noexcept {
  for (size_t i = sizeof(Unsigned); i > 0; --i) {
    out[i - 1] = static_cast<char>(x & 0xff);
    x = static_cast<Unsigned>(x >> 8);
  }
}

template <class Unsigned> Unsigned get_be(const char* in) noexcept {
  Unsigned x = 0;
  for (size_t i = 0; i < sizeof(Unsigned); ++i)
    x = static_cast<Unsigned>((x << 8) | static_cast<unsigned char>(in[i]));
  return x;
}

inline void put_be16(char* out, uint16_t x) noexcept {
  put_be(out, x);
}

inline void put_be32(char* out, uint32_t x) noexcept {
  put_be(out, x);
}

inline void put_be64(char* out, uint64_t x) noexcept {
  put_be(out, x);
}

inline uint16_t get_be16(const char* in) noexcept {
  return get_be<uint16_t>(in);
}

inline uint32_t get_be32(const char* in) noexcept {
  return get_be<uint32_t>(in);
}

inline uint64_t get_be64(const char* in) noexcept {
  return get_be<uint64_t>(in);
}

inline void append_be16(std::string& out, uint16_t x) {
  char buf[2];
  put_be16(buf, x);
  out.append(buf, sizeof(buf));
}

inline void append_be32(std::string& out, uint32_t x) {
  char buf[4];
  put_be32(buf, x);
  out.append(buf, sizeof(buf));
}

inline void append_be64(std::string& out, uint64_t x) {
  char buf[8];
  put_be64(buf, x);
  out.append(buf, sizeof(buf));
}

} // namespace herald::store::detail
