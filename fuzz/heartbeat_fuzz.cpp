// libFuzzer target: the stream heartbeat decoder (docs/fuzzing.md). A
// heartbeat that decodes must encode to one that decodes the same.

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "herald/runtime/control.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace herald;
  std::string_view frame{reinterpret_cast<const char*>(data), size};
  auto hb = control::decode_heartbeat(frame);
  if (!hb)
    return 0;
  auto again = control::decode_heartbeat(control::encode(*hb));
  if (!again || !(*again == *hb))
    std::abort();
  return 0;
}
