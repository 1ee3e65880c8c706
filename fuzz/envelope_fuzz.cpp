// libFuzzer target: the event envelope decoder (docs/fuzzing.md), read as
// the transport reads a message body: envelopes back to back, each event's
// payload converted as a handler sees it. An event that decodes must encode
// to an envelope that decodes to the same fields and payload.

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "herald/core/codec.hpp"

namespace {

using namespace herald;

void check(const event& ev) {
  const auto& data = ev.data();
  (void)ev.to_json();
  (void)ev.to_cloudevent();
  (void)data.dump(-1, ' ', false, payload::error_handler_t::replace);
  envelope_header h;
  h.event_type = ev.type();
  h.timestamp_us = ev.timestamp_us();
  h.id = ev.id();
  h.source = ev.source();
  h.key = ev.key();
  h.stream = ev.stream();
  h.seq = ev.seq();
  h.type_seq = ev.type_seq();
  h.schema_version = ev.schema_version();
  h.traceparent = ev.traceparent();
  std::string bytes;
  encode(h, data, bytes);
  auto again = decode(bytes);
  if (!again || again->type() != ev.type() || again->id() != ev.id()
      || again->source() != ev.source() || again->key() != ev.key()
      || again->stream() != ev.stream() || again->seq() != ev.seq()
      || again->type_seq() != ev.type_seq()
      || again->timestamp_us() != ev.timestamp_us()
      || again->schema_version() != ev.schema_version()
      || again->traceparent() != ev.traceparent()
      || encode_payload(again->data()) != encode_payload(data))
    std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view frame{reinterpret_cast<const char*>(data), size};
  auto owner = std::make_shared<std::string>(frame);
  size_t offset = 0;
  while (offset < owner->size()) {
    auto ev = decode_next(*owner, offset, owner);
    if (!ev)
      break;
    check(*ev);
  }
  if (auto ev = decode(frame))
    check(*ev);
  return 0;
}
