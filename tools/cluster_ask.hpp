#pragma once

/// How a `herald` command asks the whole cluster rather than one node:
/// it asks the node it connects to for the cluster view (`members`), then
/// the same request of every member that is not down, each on its own
/// thread with the command's `--timeout`, and gathers the answers by
/// member. `herald group` and `herald dlq --consumer` share it.
///
/// Thread safety: meant for `main`'s thread (it starts and joins its own).

#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "herald/core/errc.hpp"
#include "herald/runtime/control.hpp"
#include "node_control.hpp"

namespace herald::cli {

/// Whether `s` counts as down: `down` or `leaving` (a member that said it
/// stops). Such a member is not asked.
bool is_down(control::member_status s) noexcept;

/// The members of `view` that are not down, by name.
std::vector<control::cluster_member>
live_members(const control::members_reply& view);

/// The members of `view` that run consumer `name`, any status, by name.
std::vector<control::cluster_member>
members_running(const control::members_reply& view, const std::string& name);

/// The patterns of consumer `name` across `view`'s members, each once,
/// sorted.
std::vector<std::string> patterns_of(const control::members_reply& view,
                                     const std::string& name);

/// `name (status)` of each member, comma-separated.
std::string
names_with_status(const std::vector<control::cluster_member>& members);

/// One member's answer to a request the whole cluster was asked.
template <class Reply> struct member_answer {
  /// The member asked: its name, stream and control endpoint.
  control::cluster_member member;
  /// Its reply; nothing when it gave none (see `error`).
  std::optional<Reply> reply;
  /// Why there is no reply: no answer in time, an error reply.
  std::string error;
};

/// The cluster view of the node `opts` names. Fails as `ask_node` does.
caf::expected<control::members_reply> ask_view(const endpoint_options& opts);

/// Asks each of `members` `request`, in parallel, waiting at most
/// `timeout_s` seconds for each; the answers in the order of `members`.
template <class Request>
std::vector<member_answer<typename Request::reply_type>>
ask_each(const std::vector<control::cluster_member>& members,
         const Request& request, double timeout_s) {
  using reply = typename Request::reply_type;
  std::vector<member_answer<reply>> out(members.size());
  std::vector<std::thread> threads;
  threads.reserve(members.size());
  for (size_t i = 0; i < members.size(); ++i) {
    out[i].member = members[i];
    threads.emplace_back([&, i] {
      endpoint_options one;
      one.control = members[i].control;
      one.timeout = timeout_s;
      auto r = ask_node(one, request);
      if (r)
        out[i].reply = std::move(*r);
      else
        out[i].error = message_of(r.error());
    });
  }
  for (auto& t : threads)
    t.join();
  return out;
}

/// Prints `<prog>: owner 'NAME' (stream 'S', ENDPOINT): why` on stderr.
void print_error(std::string_view prog, const control::cluster_member& m,
                 std::string_view why);

/// Prints on stderr, for each member of `answers` that gave no reply,
/// `<prog>: owner 'NAME' (stream 'S', ENDPOINT): why`; returns whether
/// there was one (the command then exits 1).
template <class Reply>
bool report_unanswered(std::string_view prog,
                       const std::vector<member_answer<Reply>>& answers) {
  bool any = false;
  for (auto& a : answers)
    if (!a.reply) {
      print_error(prog, a.member, a.error);
      any = true;
    }
  return any;
}

} // namespace herald::cli
