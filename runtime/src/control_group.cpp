// The consumer group messages of the control protocol: `group.lease`, a
// member's acquires, commits and releases of partitions of the receiver's
// stream (actors/group.hpp). Their layout is in control.hpp's file comment.

#include <array>
#include <optional>
#include <utility>

#include <fmt/format.h>

#include "control_fields.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/partition.hpp"
#include "herald/runtime/control.hpp"

namespace herald::control {

using namespace detail;

namespace {

// The wire names, in the order of the enums.
constexpr std::array<std::string_view, 4> op_names = {"acquire", "standby",
                                                      "renew", "release"};
constexpr std::array<std::string_view, 5> result_names = {
  "granted", "renewed", "released", "refused", "stale"};
constexpr std::array<std::string_view, 4> letter_result_names = {
  "stored", "stale", "quota", "failed"};

template <class Enum, size_t N>
std::string_view wire_name(const std::array<std::string_view, N>& names,
                           Enum value) {
  auto i = static_cast<size_t>(value);
  return i < N ? names[i] : "unknown";
}

// Reads the enum field `name` of `f` from its wire name; `expected` lists
// them for the error.
template <class Enum, size_t N>
void read_name(fields& f, const char* name,
               const std::array<std::string_view, N>& names, Enum& out,
               std::string_view expected) {
  std::string text;
  f.req(name, text);
  if (f.failed())
    return;
  for (size_t i = 0; i < N; ++i)
    if (names[i] == text) {
      out = static_cast<Enum>(i);
      return;
    }
  f.fail(fmt::format("field '{}': unknown {} '{}'; expected {}",
                     f.path_of(name), name, text, expected));
}

// Fails `f` when the list `name` holds more than `max_partitions` entries.
template <class T>
void check_partitions_size(fields& f, const char* name,
                           const std::vector<T>& list) {
  if (!f.failed() && list.size() > max_partitions)
    f.fail(fmt::format("field '{}': {} entries; expected at most {} (the "
                       "most partitions a group may have)",
                       f.path_of(name), list.size(), max_partitions));
}

// Fails `f` when the list `name` holds more than `max_group_letters`.
template <class T>
void check_letters_size(fields& f, const char* name,
                        const std::vector<T>& list) {
  if (!f.failed() && list.size() > max_group_letters)
    f.fail(fmt::format("field '{}': {} entries; expected at most {}",
                       f.path_of(name), list.size(), max_group_letters));
}

payload letters_of(const std::vector<group_letter>& letters) {
  auto out = payload::array();
  for (auto& l : letters) {
    auto bytes = store::encode_dead_letter(l.letter);
    payload one{{key::p, l.partition},
                {key::epoch, l.epoch},
                {key::letter, payload::binary(std::vector<uint8_t>(
                                bytes.begin(), bytes.end()))}};
    if (l.letter.id != 0)
      one[key::id] = l.letter.id;
    out.push_back(std::move(one));
  }
  return out;
}

void read_letters(fields& f, const char* name, std::vector<group_letter>& out) {
  f.opt_each(name, out,
             [&](payload& e, const std::string& path, group_letter& one) {
               return read_nested(e, f.where(), path, [&](fields& ef) {
                 ef.req(key::p, one.partition);
                 ef.req(key::epoch, one.epoch);
                 std::vector<uint8_t> bytes;
                 ef.req(key::letter, bytes);
                 ef.opt(key::id, one.letter.id);
                 if (ef.failed())
                   return;
                 std::string why;
                 auto l = store::decode_dead_letter(
                   std::string_view{reinterpret_cast<const char*>(bytes.data()),
                                    bytes.size()},
                   why);
                 if (!l) {
                   ef.fail(fmt::format("field '{}': not a dead letter: {}",
                                       ef.path_of(key::letter), why));
                   return;
                 }
                 auto id = one.letter.id;
                 one.letter = std::move(*l);
                 one.letter.id = id;
               });
             });
  check_letters_size(f, name, out);
}

payload entities_of(const std::vector<parked_entity>& list) {
  auto out = payload::array();
  for (auto& e : list) {
    payload one{{key::key, e.key}};
    if (e.dead_letter != 0)
      one[key::dead_letter] = e.dead_letter;
    out.push_back(std::move(one));
  }
  return out;
}

void read_entities(fields& f, const char* name,
                   std::vector<parked_entity>& out) {
  f.opt_each(name, out,
             [&](payload& e, const std::string& path, parked_entity& one) {
               return read_nested(e, f.where(), path, [&](fields& ef) {
                 ef.req(key::key, one.key);
                 ef.opt(key::dead_letter, one.dead_letter);
               });
             });
  check_letters_size(f, name, out);
}

} // namespace

// --- group.lease
// ----------------------------------------------------------------

std::string_view name_of(const group_lease_request&) {
  return op::group_lease;
}

std::string_view name_of(const group_lease_reply&) {
  return op::group_lease;
}

void write(payload& j, const group_lease_request& m) {
  auto& b = m.body;
  j[key::stream] = b.stream;
  j[key::group] = b.group;
  j[key::member] = b.member;
  j[key::partitions] = b.partitions;
  if (b.initial != 0)
    j[key::initial] = b.initial;
  auto entries = payload::array();
  for (auto& e : b.entries) {
    payload one{{key::p, e.partition}, {key::op, wire_name(op_names, e.op)}};
    if (e.epoch != 0)
      one[key::epoch] = e.epoch;
    if (e.offset != 0)
      one[key::offset] = e.offset;
    entries.push_back(std::move(one));
  }
  j[key::entries] = std::move(entries);
  if (!b.letters.empty())
    j[key::letters] = letters_of(b.letters);
  if (!b.redriven.empty()) {
    auto done = payload::array();
    for (auto& d : b.redriven)
      done.push_back(
        {{key::p, d.partition}, {key::epoch, d.epoch}, {key::id, d.id}});
    j[key::redriven] = std::move(done);
  }
}

void read(fields& f, group_lease_request& m) {
  auto& b = m.body;
  f.req(key::stream, b.stream);
  f.req(key::group, b.group);
  f.req(key::member, b.member);
  f.req(key::partitions, b.partitions);
  if (!f.failed() && (b.partitions == 0 || b.partitions > max_partitions))
    f.fail(fmt::format("field '{}': {}; expected 1 to {}",
                       f.path_of(key::partitions), b.partitions,
                       max_partitions));
  f.opt(key::initial, b.initial);
  f.req_each(key::entries, b.entries,
             [&](payload& e, const std::string& path, lease_entry& one) {
               return read_nested(e, f.where(), path, [&](fields& ef) {
                 ef.req(key::p, one.partition);
                 read_name(ef, key::op, op_names, one.op,
                           "acquire, standby, renew or release");
                 ef.opt(key::epoch, one.epoch);
                 ef.opt(key::offset, one.offset);
               });
             });
  check_partitions_size(f, key::entries, b.entries);
  read_letters(f, key::letters, b.letters);
  f.opt_each(key::redriven, b.redriven,
             [&](payload& e, const std::string& path, group_letter_done& one) {
               return read_nested(e, f.where(), path, [&](fields& ef) {
                 ef.req(key::p, one.partition);
                 ef.req(key::epoch, one.epoch);
                 ef.req(key::id, one.id);
               });
             });
  check_letters_size(f, key::redriven, b.redriven);
}

void write(payload& j, const group_lease_reply& m) {
  auto& b = m.body;
  j[key::stream] = b.stream;
  j[key::group] = b.group;
  j[key::ttl_ms] = b.ttl_ms;
  auto entries = payload::array();
  for (auto& e : b.entries) {
    payload one{{key::p, e.partition},
                {key::result, wire_name(result_names, e.result)},
                {key::epoch, e.epoch},
                {key::offset, e.offset}};
    if (!e.holder.empty())
      one[key::holder] = e.holder;
    if (e.wanted)
      one[key::wanted] = true;
    if (!e.reason.empty())
      one[key::reason] = e.reason;
    if (!e.parked.empty())
      one[key::parked] = entities_of(e.parked);
    entries.push_back(std::move(one));
  }
  j[key::entries] = std::move(entries);
  j[key::orphans] = b.orphans;
  if (!b.letters.empty()) {
    auto results = payload::array();
    for (auto& l : b.letters) {
      payload one{{key::result, wire_name(letter_result_names, l.result)}};
      if (l.id != 0)
        one[key::id] = l.id;
      if (!l.reason.empty())
        one[key::reason] = l.reason;
      results.push_back(std::move(one));
    }
    j[key::letters] = std::move(results);
  }
  if (!b.redrive.empty())
    j[key::redrive] = letters_of(b.redrive);
  if (!b.redrive_more.empty())
    j[key::redrive_more] = b.redrive_more;
  if (!b.unparked.empty())
    j[key::unparked] = entities_of(b.unparked);
  if (b.dead_letters != 0)
    j[key::dead_letters] = b.dead_letters;
}

void read(fields& f, group_lease_reply& m) {
  auto& b = m.body;
  f.req(key::stream, b.stream);
  f.req(key::group, b.group);
  f.req(key::ttl_ms, b.ttl_ms);
  f.req_each(key::entries, b.entries,
             [&](payload& e, const std::string& path, lease_entry_reply& one) {
               return read_nested(e, f.where(), path, [&](fields& ef) {
                 ef.req(key::p, one.partition);
                 read_name(ef, key::result, result_names, one.result,
                           "granted, renewed, released, refused or stale");
                 ef.req(key::epoch, one.epoch);
                 ef.req(key::offset, one.offset);
                 ef.opt(key::holder, one.holder);
                 ef.opt(key::wanted, one.wanted);
                 ef.opt(key::reason, one.reason);
                 read_entities(ef, key::parked, one.parked);
               });
             });
  check_partitions_size(f, key::entries, b.entries);
  f.req_list(key::orphans, b.orphans);
  check_partitions_size(f, key::orphans, b.orphans);
  f.opt_each(key::letters, b.letters,
             [&](payload& e, const std::string& path, group_letter_reply& one) {
               return read_nested(e, f.where(), path, [&](fields& ef) {
                 read_name(ef, key::result, letter_result_names, one.result,
                           "stored, stale, quota or failed");
                 ef.opt(key::id, one.id);
                 ef.opt(key::reason, one.reason);
               });
             });
  check_letters_size(f, key::letters, b.letters);
  read_letters(f, key::redrive, b.redrive);
  f.opt_list(key::redrive_more, b.redrive_more);
  check_letters_size(f, key::redrive_more, b.redrive_more);
  read_entities(f, key::unparked, b.unparked);
  f.opt(key::dead_letters, b.dead_letters);
  b.id = m.id;
}

// --- encode, decode
// ------------------------------------------------------------

std::string encode(const group_lease_request& m) {
  return encode_request(m);
}

std::string encode(const group_lease_reply& m) {
  return encode_reply(m);
}

std::optional<caf::expected<request>>
detail::read_group_request(std::string_view name, payload& j, uint32_t v) {
  if (name == op::group_lease)
    return read_request<group_lease_request>(j, v);
  return std::nullopt;
}

template caf::expected<answer<group_lease_reply>>
decode_reply<group_lease_reply>(std::string_view, const decode_limits&);

} // namespace herald::control
