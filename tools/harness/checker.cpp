#include "checker.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "herald/core/errc.hpp"
#include "herald/core/names.hpp"

namespace herald::harness {

namespace {

std::string str(const payload& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_string() ? it->get<std::string>()
                                          : std::string{};
}

uint64_t num(const payload& j, const char* k) {
  auto it = j.find(k);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

// Calls `fn(line_no, json)` per complete line of `text`; a last line
// without a newline is counted in `cut`, undecodable lines in `bad`.
template <class F>
void each_line(std::string_view text, const std::string& file, size_t& cut,
               std::vector<std::string>& bad, F fn) {
  size_t no = 0;
  while (!text.empty()) {
    ++no;
    auto end = text.find('\n');
    if (end == std::string_view::npos) {
      ++cut;
      return;
    }
    auto line = text.substr(0, end);
    text.remove_prefix(end + 1);
    if (line.empty())
      continue;
    auto j = payload::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      bad.push_back(fmt::format("{}:{}: not a JSON object", file, no));
      continue;
    }
    fn(no, j);
  }
}

std::string read_text(const std::string& path, caf::error& err) {
  std::ifstream in{path, std::ios::binary};
  if (!in) {
    err = make_error(errc::io_error,
                     fmt::format("cannot read '{}': is it a finished run's "
                                 "folder?",
                                 path));
    return {};
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// What one consumer did, from its records in order.
struct judged {
  consumer_verdict& out;
  const checks_spec& checks;
  void example(std::string text) {
    if (out.examples.size() < 5)
      out.examples.push_back(std::move(text));
  }
};

void judge_one(const std::vector<published>& publishes,
               const std::vector<const history_record*>& records,
               const std::set<std::string>& fail_keys,
               const std::vector<pattern>& patterns, judged j) {
  auto& v = j.out;
  auto selects = [&](const std::string& type) {
    return any_matches(patterns, type);
  };
  // The acked events it should have, by id.
  std::unordered_map<std::string, const published*> expected;
  bool any_unknown = false;
  for (auto& p : publishes) {
    if (p.outcome == published::status::acked && selects(p.type))
      expected.emplace(p.id, &p);
    any_unknown = any_unknown || p.outcome == published::status::unknown;
  }
  v.expected = expected.size();
  std::unordered_map<std::string, uint64_t> seen; // id -> records
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t>
    last_of_type;
  std::map<std::pair<std::string, std::string>, uint64_t> last_of_key;
  // Per stream, the seqs of expected events recorded so far.
  std::map<std::string, std::set<uint64_t>> recorded;
  std::map<std::string, std::set<uint64_t>> wanted;
  for (auto& [id, p] : expected)
    wanted[p->stream].insert(p->seq);
  for (auto* r : records) {
    if (r->what == history_record::kind::offset) {
      auto w = wanted.find(r->stream);
      if (w == wanted.end())
        continue;
      auto& done = recorded[r->stream];
      for (auto it = w->second.begin();
           it != w->second.end() && *it <= r->offset; ++it)
        if (done.count(*it) == 0) {
          ++v.offset_violations;
          j.example(fmt::format("offset {} committed in stream {} before "
                                "seq {} was handled",
                                r->offset, r->stream, *it));
          break; // one per offset record
        }
      continue;
    }
    if (r->what != history_record::kind::handling)
      continue;
    auto n = ++seen[r->id];
    if (n > 1)
      ++v.duplicates;
    auto known = expected.find(r->id);
    if (known == expected.end()) {
      if (n == 1 && any_unknown)
        ++v.unknown_delivered;
    } else {
      recorded[r->stream].insert(r->seq);
    }
    bool poison = fail_keys.count(r->key) > 0;
    if (n == 1) {
      if (r->handled)
        ++v.handled;
      else
        ++v.dead_lettered;
      if (poison && r->handled) {
        ++v.poison_handled;
        j.example(
          fmt::format("poison event {} (key {}) was handled", r->id, r->key));
      }
      if (!poison && !r->handled) {
        ++v.unexpected_dead_letters;
        j.example(fmt::format("event {} (key {}, seq {}) was dead-lettered "
                              "but is no poison",
                              r->id, r->key, r->seq));
      }
      auto& by_type = last_of_type[{r->stream, r->key, r->type}];
      if (r->seq < by_type) {
        ++v.inversions;
        j.example(fmt::format("key {} type {}: seq {} handled after seq {}",
                              r->key, r->type, r->seq, by_type));
      }
      by_type = std::max(by_type, r->seq);
      auto& by_key = last_of_key[{r->stream, r->key}];
      if (r->seq < by_key)
        ++v.cross_type_inversions;
      by_key = std::max(by_key, r->seq);
    }
  }
  for (auto& [id, p] : expected)
    if (seen.count(id) == 0) {
      ++v.lost;
      j.example(fmt::format("lost: event {} ({} key {}, seq {})", id, p->type,
                            p->key, p->seq));
    }
  v.ok = v.lost == 0 && v.inversions == 0 && v.poison_handled == 0
         && v.unexpected_dead_letters == 0 && v.offset_violations == 0
         && (!j.checks.duplicates_fail || v.duplicates == 0)
         && (!j.checks.cross_type_fail || v.cross_type_inversions == 0);
}

} // namespace

history parse_history(std::string_view text, const std::string& file) {
  history h;
  // A line that is no JSON is a record cut short by a kill (the restarted
  // node starts a fresh line after it), like a last line without newline.
  std::vector<std::string> cut;
  each_line(text, file, h.truncated, cut, [&](size_t no, const payload& j) {
    if (num(j, "v") != 1) {
      h.malformed.push_back(
        fmt::format("{}:{}: a record of history version {}, not 1", file, no,
                    j.contains("v") ? j["v"].dump() : "none"));
      return;
    }
    history_record r;
    auto kind = str(j, "record");
    r.node = str(j, "node");
    r.consumer = str(j, "consumer");
    r.incarnation = num(j, "incarnation");
    r.stream = str(j, "stream");
    if (kind == "start") {
      r.what = history_record::kind::start;
      if (auto it = j.find("fail_keys"); it != j.end())
        for (auto& k : *it)
          if (k.is_string())
            r.fail_keys.push_back(k.get<std::string>());
    } else if (kind == "offset") {
      r.what = history_record::kind::offset;
      r.offset = num(j, "offset");
    } else if (kind == "handling") {
      r.id = str(j, "id");
      r.seq = num(j, "seq");
      r.key = str(j, "key");
      r.type = str(j, "type");
      r.attempt = num(j, "attempt");
      r.handled = str(j, "outcome") == "handled";
    } else {
      h.malformed.push_back(
        fmt::format("{}:{}: unknown record '{}'", file, no, kind));
      return;
    }
    h.records.push_back(std::move(r));
  });
  h.truncated += cut.size();
  return h;
}

caf::expected<std::vector<published>> parse_publishes(std::string_view text,
                                                      const std::string& file) {
  std::vector<published> out;
  size_t cut = 0;
  std::vector<std::string> bad;
  each_line(text, file, cut, bad, [&](size_t, const payload& j) {
    published p;
    auto o = str(j, "outcome");
    p.outcome = o == "acked"     ? published::status::acked
                : o == "refused" ? published::status::refused
                                 : published::status::unknown;
    p.type = str(j, "type");
    p.key = str(j, "key");
    p.id = str(j, "id");
    p.stream = str(j, "stream");
    p.seq = num(j, "seq");
    out.push_back(std::move(p));
  });
  if (!bad.empty())
    return make_error(errc::decode_error, bad.front());
  return out;
}

verdict judge(const std::vector<published>& publishes,
              const std::vector<std::pair<std::string, history>>& histories,
              const std::vector<consumer_info>& consumers,
              const checks_spec& checks) {
  verdict v;
  for (auto& p : publishes)
    switch (p.outcome) {
    case published::status::acked:
      ++v.acked;
      break;
    case published::status::unknown:
      ++v.unknown;
      break;
    case published::status::refused:
      ++v.refused;
      break;
    }
  for (auto& [name, h] : histories) {
    v.truncated += h.truncated;
    for (auto& m : h.malformed)
      v.failures.push_back(m);
  }
  for (auto& c : consumers) {
    consumer_verdict cv;
    cv.node = c.node;
    cv.consumer = c.consumer;
    std::vector<pattern> patterns;
    for (auto& text : c.patterns)
      if (auto p = pattern::parse(text))
        patterns.push_back(std::move(*p));
    std::vector<const history_record*> records;
    std::set<std::string> fail_keys;
    for (auto& [name, h] : histories) {
      if (name != c.node)
        continue;
      for (auto& r : h.records) {
        if (r.what == history_record::kind::start)
          fail_keys.insert(r.fail_keys.begin(), r.fail_keys.end());
        else if (r.consumer == c.consumer)
          records.push_back(&r);
      }
    }
    judge_one(publishes, records, fail_keys, patterns, {cv, checks});
    if (!cv.ok)
      v.failures.push_back(fmt::format(
        "{} on {}: lost {}, inversions {}, cross-type inversions {}{}, "
        "duplicates {}{}, poison handled {}, unexpected dead letters {}, "
        "offsets past unhandled events {}",
        cv.consumer, cv.node, cv.lost, cv.inversions, cv.cross_type_inversions,
        checks.cross_type_fail ? " (must be 0)" : "", cv.duplicates,
        checks.duplicates_fail ? " (must be 0)" : "", cv.poison_handled,
        cv.unexpected_dead_letters, cv.offset_violations));
    v.consumers.push_back(std::move(cv));
  }
  if (v.acked == 0)
    v.failures.push_back("no publish was acknowledged: nothing was tested; "
                         "see the nodes' logs");
  if (consumers.empty())
    v.failures.push_back("no consumer was found on any node: nothing was "
                         "checked");
  return v;
}

caf::expected<verdict> check_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  caf::error err;
  auto run = payload::parse(
    read_text((fs::path{dir} / "run.json").string(), err), nullptr, false);
  if (err)
    return err;
  if (!run.is_object())
    return make_error(errc::decode_error,
                      fmt::format("'{}/run.json' is no JSON object", dir));
  checks_spec checks;
  checks.duplicates_fail = run.value("duplicates_fail", false);
  checks.cross_type_fail = run.value("cross_type_fail", false);
  auto pub_path = (fs::path{dir} / "publishes.jsonl").string();
  auto text = read_text(pub_path, err);
  if (err)
    return err;
  auto publishes = parse_publishes(text, pub_path);
  if (!publishes)
    return std::move(publishes.error());
  auto cons_path = (fs::path{dir} / "consumers.json").string();
  auto cons = payload::parse(read_text(cons_path, err), nullptr, false);
  if (err)
    return err;
  if (!cons.is_array())
    return make_error(errc::decode_error,
                      fmt::format("'{}' is no JSON array", cons_path));
  std::vector<consumer_info> consumers;
  for (auto& c : cons) {
    consumer_info ci;
    ci.node = str(c, "node");
    ci.consumer = str(c, "consumer");
    if (auto it = c.find("patterns"); it != c.end())
      for (auto& p : *it)
        if (p.is_string())
          ci.patterns.push_back(p.get<std::string>());
    consumers.push_back(std::move(ci));
  }
  std::vector<std::pair<std::string, history>> histories;
  auto hdir = fs::path{dir} / "history";
  std::error_code ec;
  for (auto& entry : fs::directory_iterator{hdir, ec}) {
    if (entry.path().extension() != ".jsonl")
      continue;
    auto path = entry.path().string();
    auto body = read_text(path, err);
    if (err)
      return err;
    histories.emplace_back(entry.path().stem().string(),
                           parse_history(body, path));
  }
  if (ec)
    return make_error(errc::io_error, fmt::format("cannot list '{}': {}",
                                                  hdir.string(), ec.message()));
  std::sort(histories.begin(), histories.end(), [](auto& a, auto& b) {
    return a.first < b.first;
  });
  auto v = judge(*publishes, histories, consumers, checks);
  auto cluster_path = fs::path{dir} / "cluster.json";
  if (fs::exists(cluster_path)) {
    auto cluster =
      payload::parse(read_text(cluster_path.string(), err), nullptr, false);
    if (err)
      return err;
    if (!cluster.is_object())
      return make_error(
        errc::decode_error,
        fmt::format("'{}' is no JSON object", cluster_path.string()));
    if (auto it = cluster.find("failures");
        it != cluster.end() && it->is_array())
      for (auto& f : *it)
        if (f.is_string())
          v.failures.push_back(f.get<std::string>());
    v.cluster = std::move(cluster);
  }
  return v;
}

namespace {

// The cluster's results in the table: one line per expectation and per
// node of a join/leave cycle fault.
void cluster_lines(const payload& c, std::vector<std::string>& lines) {
  if (!c.is_object())
    return;
  if (auto it = c.find("membership"); it != c.end() && !it->empty()) {
    lines.push_back(fmt::format("{:<28} {:>9} {:>8} {:>6}  {}", "membership",
                                "within", "met in", "polls", "result"));
    for (auto& m : *it)
      lines.push_back(fmt::format(
        "{:<28} {:>6} ms {:>8} {:>6}  {}", str(m, "name"),
        m.value("within_ms", 0),
        m.contains("met_after_ms")
          ? fmt::format("{} ms", m.value("met_after_ms", 0))
          : std::string{"-"},
        m.value("polls", 0), m.value("met", false) ? "ok" : "FAIL"));
  }
  if (auto it = c.find("cycles"); it != c.end())
    for (auto& cy : *it) {
      lines.push_back(fmt::format(
        "cycles of {}: {} of {} done in {} ms, {} unclean exit(s); "
        "descriptors of the others (total/sockets/eventfds) before, peak, "
        "after:",
        str(cy, "target"), cy.value("done", 0), cy.value("times", 0),
        cy.value("took_ms", 0), cy.value("unclean_exits", 0)));
      auto fds = [](const payload& f) {
        return fmt::format("{}/{}/{}", f.value("total", 0),
                           f.value("sockets", 0), f.value("eventfds", 0));
      };
      for (auto& n : cy.value("nodes", payload::array()))
        lines.push_back(fmt::format(
          "  {:<20} {:>12} {:>12} {:>12}  {}", str(n, "node"),
          fds(n.value("before", payload::object())),
          fds(n.value("peak", payload::object())),
          fds(n.value("after", payload::object())),
          n.value("returned", false)
            ? fmt::format("back in {} ms", n.value("returned_after_ms", 0))
          : n.contains("note") ? str(n, "note")
                               : std::string{"NOT BACK"}));
    }
}

} // namespace

std::vector<std::string> table(const verdict& v) {
  std::vector<std::string> lines;
  lines.push_back(fmt::format("{:<22} {:<14} {:>8} {:>8} {:>5} {:>5} {:>5} "
                              "{:>4} {:>6} {:>7} {:>7}  {}",
                              "consumer", "node", "expected", "handled", "dead",
                              "lost", "dups", "inv", "cross", "offset!",
                              "unknown", "result"));
  for (auto& c : v.consumers)
    lines.push_back(fmt::format(
      "{:<22} {:<14} {:>8} {:>8} {:>5} {:>5} {:>5} {:>4} {:>6} {:>7} {:>7}  "
      "{}",
      c.consumer, c.node, c.expected, c.handled, c.dead_lettered, c.lost,
      c.duplicates, c.inversions, c.cross_type_inversions, c.offset_violations,
      c.unknown_delivered, c.ok ? "ok" : "FAIL"));
  lines.push_back(
    fmt::format("publishes: {} acknowledged, {} unknown "
                "outcome (no answer, or not stored), {} refused; {} history "
                "record(s) cut short by a kill",
                v.acked, v.unknown, v.refused, v.truncated));
  for (auto& c : v.consumers)
    for (auto& e : c.examples)
      lines.push_back(fmt::format("  {} on {}: {}", c.consumer, c.node, e));
  cluster_lines(v.cluster, lines);
  for (auto& f : v.failures)
    lines.push_back("FAILED: " + f);
  lines.push_back(v.ok() ? "result: PASS" : "result: FAIL");
  return lines;
}

payload to_json(const verdict& v) {
  auto consumers = payload::array();
  for (auto& c : v.consumers)
    consumers.push_back({{"consumer", c.consumer},
                         {"node", c.node},
                         {"expected", c.expected},
                         {"handled", c.handled},
                         {"dead_lettered", c.dead_lettered},
                         {"lost", c.lost},
                         {"duplicates", c.duplicates},
                         {"inversions", c.inversions},
                         {"cross_type_inversions", c.cross_type_inversions},
                         {"poison_handled", c.poison_handled},
                         {"unexpected_dead_letters", c.unexpected_dead_letters},
                         {"offset_violations", c.offset_violations},
                         {"unknown_delivered", c.unknown_delivered},
                         {"examples", c.examples},
                         {"ok", c.ok}});
  uint64_t lost = 0;
  for (auto& c : v.consumers)
    lost += c.lost;
  return {{"version", 1},
          {"ok", v.ok()},
          {"lost", lost},
          {"acked", v.acked},
          {"unknown", v.unknown},
          {"refused", v.refused},
          {"truncated", v.truncated},
          {"consumers", std::move(consumers)},
          {"cluster", v.cluster},
          {"failures", v.failures}};
}

} // namespace herald::harness
