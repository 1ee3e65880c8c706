// Consumer offsets: per consumer and stream, the seq up to which every
// selected event was handled. Key: consumer '\0' stream; value: the seq, 8
// bytes big-endian (column family `offsets`).

#include "herald/store/event_log.hpp"

#include <fmt/format.h>

#include "event_log_impl.hpp"

namespace herald::store {

using namespace detail;

namespace {

// The key of an offset: consumer '\0' stream.
std::string offset_key(std::string_view consumer, std::string_view stream) {
  std::string key;
  key.reserve(consumer.size() + 1 + stream.size());
  key.append(consumer);
  key.push_back('\0');
  key.append(stream);
  return key;
}

} // namespace

caf::error event_log::commit_offset(std::string_view consumer,
                                    std::string_view stream, uint64_t seq) {
  auto& self = *impl_;
  auto key = offset_key(consumer, stream);
  rocksdb::WriteOptions wo;
  wo.sync = false;
  auto s = self.db->Put(wo, self.cf_offsets, key, be64{seq}.slice());
  if (!s.ok())
    return write_error(self.opts.dir, s);
  return {};
}

uint64_t event_log::offset(std::string_view consumer,
                           std::string_view stream) const {
  auto& self = *impl_;
  auto key = offset_key(consumer, stream);
  std::string value;
  auto s = self.db->Get(self.read_options(), self.cf_offsets, key, &value);
  if (!s.ok() || value.size() != 8)
    return 0;
  return get_be64(value.data());
}

} // namespace herald::store
