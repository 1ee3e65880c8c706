#include "group_format.hpp"

#include "coding.hpp"

namespace herald::store::detail {

void encode_group(const std::vector<record>& group, std::string& value) {
  value.clear();
  append_be32(value, static_cast<uint32_t>(group.size()));
  for (auto& r : group) {
    append_be64(value, static_cast<uint64_t>(r.timestamp_us));
    append_be16(value, static_cast<uint16_t>(r.type.size()));
    append_be32(value, static_cast<uint32_t>(r.envelope.size()));
    value.append(r.type);
    value.append(r.envelope);
  }
}

group_reader::group_reader(uint64_t first_seq, std::string_view value)
    : seq_(first_seq), rest_(value) {
  if (rest_.size() < 4) {
    corrupt_ = true;
    return;
  }
  left_ = get_be32(rest_.data());
  rest_.remove_prefix(4);
}

bool group_reader::next(entry_view& out) {
  if (corrupt_ || left_ == 0)
    return false;
  if (rest_.size() < entry_header_size)
    return fail();
  auto ts = get_be64(rest_.data());
  size_t tlen = get_be16(rest_.data() + 8);
  size_t elen = get_be32(rest_.data() + 10);
  if (rest_.size() < entry_header_size + tlen + elen)
    return fail();
  out.seq = seq_++;
  out.timestamp_us = static_cast<int64_t>(ts);
  out.type = rest_.substr(entry_header_size, tlen);
  out.envelope = rest_.substr(entry_header_size + tlen, elen);
  rest_.remove_prefix(entry_header_size + tlen + elen);
  --left_;
  return true;
}

} // namespace herald::store::detail
