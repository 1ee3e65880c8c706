// libFuzzer target: every control message decoder (docs/fuzzing.md). The
// first byte picks the decoder (control_kinds.hpp), the rest is the frame.
// A message that decodes must encode to bytes that decode to the same
// message again: a decoder that accepts what its encoder cannot reproduce
// is a fault too.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>

#include "control_kinds.hpp"

namespace {

using namespace herald;

// Encodes whichever alternative `a` holds.
template <class Variant> std::string encode_any(const Variant& a) {
  return std::visit(
    [](const auto& m) {
      return control::encode(m);
    },
    a);
}

template <class Reply> void reply(std::string_view frame) {
  auto a = control::decode_reply<Reply>(frame);
  if (!a)
    return;
  auto bytes = encode_any(*a);
  auto again = control::decode_reply<Reply>(bytes);
  if (!again || encode_any(*again) != bytes)
    std::abort();
}

template <size_t... I>
void reply_at(size_t i, std::string_view frame, std::index_sequence<I...>) {
  ((i == I ? reply<std::tuple_element_t<I, fuzz::replies>>(frame) : void()),
   ...);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  auto kind = static_cast<unsigned>(data[0]) % fuzz::kinds;
  std::string_view frame{reinterpret_cast<const char*>(data) + 1, size - 1};
  if (kind == fuzz::request_kind) {
    auto r = control::decode_request(frame);
    if (!r)
      return 0;
    (void)control::op_name(*r);
    auto bytes = control::encode(*r);
    auto again = control::decode_request(bytes);
    if (!again || control::encode(*again) != bytes)
      std::abort();
  } else if (kind == fuzz::id_kind) {
    (void)control::message_id(frame);
  } else {
    reply_at(kind - fuzz::first_reply, frame,
             std::make_index_sequence<std::tuple_size_v<fuzz::replies>>{});
  }
  return 0;
}
