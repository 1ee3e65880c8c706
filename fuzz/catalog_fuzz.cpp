// libFuzzer target: the event catalog loader (config/events.yaml format;
// docs/fuzzing.md). A catalog that loads is asked to validate a payload
// against each of its events, as a producer would.

#include <cstdint>
#include <string>
#include <string_view>

#include "herald/core/catalog.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace herald;
  std::string_view yaml{reinterpret_cast<const char*>(data), size};
  auto cat = catalog::parse(yaml, "events.yaml");
  if (!cat)
    return 0;
  auto sample = payload::object();
  for (const auto& spec : cat->events()) {
    (void)catalog::validate(spec, sample);
    (void)catalog::canonical_form(spec, sample);
    (void)cat->find(spec.name);
  }
  return 0;
}
