// libFuzzer target: the node config loader (config/*_service.yaml format;
// docs/fuzzing.md).

#include <cstdint>
#include <string>
#include <string_view>

#include "herald/core/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace herald;
  std::string_view yaml{reinterpret_cast<const char*>(data), size};
  (void)node_config::parse(yaml, "node.yaml", "config");
  return 0;
}
