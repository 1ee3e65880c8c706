// Consumer offsets: per consumer and stream, the seq up to which every
// selected event was handled. Key: consumer '\0' stream; value: the seq, 8
// bytes big-endian (column family `offsets`).

#include "herald/store/event_log.hpp"

#include <fmt/format.h>

#include "event_log_impl.hpp"
#include "herald/core/errc.hpp"

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

// An offset that cannot be read, naming whose it is and why.
caf::error offset_error(std::string_view consumer, std::string_view stream,
                        const caf::error& cause) {
  // Keeps the cause's code: corrupt_log or io_error.
  return make_error(static_cast<errc>(cause.code()),
                    fmt::format("offset of consumer '{}' in stream '{}': {}",
                                consumer, stream, message_of(cause)));
}

} // namespace

caf::error event_log::commit_offset(std::string_view consumer,
                                    std::string_view stream, uint64_t seq) {
  return commit_offsets({{std::string{consumer}, seq}}, stream);
}

caf::error event_log::commit_offsets(
  const std::vector<std::pair<std::string, uint64_t>>& offsets,
  std::string_view stream) {
  if (offsets.empty())
    return {};
  auto& self = *impl_;
  rocksdb::WriteOptions wo;
  wo.sync = false;
  rocksdb::WriteBatch batch;
  for (auto& [consumer, seq] : offsets)
    batch.Put(self.cf_offsets, offset_key(consumer, stream), be64{seq}.slice());
  auto s = self.write(wo, batch);
  if (!s.ok())
    return write_error(self.opts.dir, s);
  return {};
}

caf::expected<uint64_t> event_log::offset(std::string_view consumer,
                                          std::string_view stream) const {
  auto& self = *impl_;
  auto key = offset_key(consumer, stream);
  std::string value;
  auto s = self.db->Get(self.read_options(), self.cf_offsets, key, &value);
  if (s.IsNotFound())
    return uint64_t{0};
  if (!s.ok())
    return offset_error(consumer, stream, read_error(self.opts.dir, s));
  if (value.size() != 8)
    return offset_error(
      consumer, stream,
      corrupt_error(self.opts.dir, fmt::format("the offset is {} bytes, "
                                               "not 8",
                                               value.size())));
  return get_be64(value.data());
}

} // namespace herald::store
