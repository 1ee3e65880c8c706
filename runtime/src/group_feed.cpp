#include "group_feed.hpp"

#include <algorithm>
#include <utility>

namespace herald {

group_feed::group_feed(std::string self, std::chrono::microseconds rejoin_grace)
    : self_(std::move(self)), grace_(rejoin_grace) {
  // nop
}

void group_feed::observe(const std::vector<control::cluster_member>& records,
                         clock::time_point now) {
  records_ = records;
  in_grace_.clear();
  std::set<std::string> leaving;
  for (auto& m : records_) {
    if (m.status != control::member_status::leaving)
      continue;
    leaving.insert(m.name);
    auto since = leaving_since_.try_emplace(m.name, now).first->second;
    if (now - since < grace_)
      in_grace_.insert(m.name);
  }
  std::erase_if(leaving_since_, [&leaving](const auto& kv) {
    return leaving.count(kv.first) == 0;
  });
}

std::vector<std::string>
group_feed::members(const std::string& consumer) const {
  std::vector<std::string> out{self_};
  for (auto& m : records_) {
    if (m.name == self_)
      continue;
    auto counts = m.status == control::member_status::joining
                  || m.status == control::member_status::up
                  || m.status == control::member_status::suspect
                  || in_grace_.count(m.name) > 0;
    if (!counts)
      continue;
    auto runs = std::any_of(m.consumers.begin(), m.consumers.end(),
                            [&consumer](const control::member_consumer& c) {
                              return c.name == consumer;
                            });
    if (runs)
      out.push_back(m.name);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

} // namespace herald
