#pragma once

/// How a `herald` command reaches a running node through its control
/// endpoint: the options `--control ENDPOINT`, `--config NODE.yaml` (the
/// node's `control`) and `--timeout S`, and one request of the control
/// protocol (`herald/runtime/control.hpp`) sent through a
/// `herald::control_client`. `herald dlq` and `herald status` share it.
///
/// Thread safety: meant for `main`'s thread.

#include <functional>
#include <string>
#include <utility>

#include <CLI/CLI.hpp>
#include <caf/expected.hpp>

#include "herald/runtime/control_client.hpp"

namespace herald::cli {

/// Where the node is and how long to wait for it.
struct endpoint_options {
  /// The node's control endpoint (`--control`). Default: none.
  std::string control;
  /// The node's configuration file (`--config`), read for its `control`
  /// when `control` is empty. Default: none.
  std::string config;
  /// Seconds to wait for the answer (`--timeout`). Default: 5.
  double timeout = 5;
};

/// A CLI11 check of a control endpoint: `tcp://HOST:PORT` or `ipc://PATH`;
/// its message names the value and both forms.
CLI::Validator control_endpoint();

/// Adds `--control`, `--config` and `--timeout` to `cmd`, and makes it
/// refuse a command line without exactly one of `--control` and
/// `--config` (exit 2), or that `extra_check` refuses (it throws a
/// `CLI::ParseError`).
void add_endpoint_options(CLI::App& cmd, endpoint_options& opts,
                          std::function<void()> extra_check = {});

/// The endpoint to connect to: `opts.control`, or the config's `control`
/// with a wildcard host (`*`, `0.0.0.0`) replaced by the loopback address.
/// Fails with the config's load error, or with `errc::invalid_config` when
/// the config leaves the port to the node (`*`): only the node's log knows
/// it then.
caf::expected<std::string> resolve_endpoint(const endpoint_options& opts);

/// A client of the node `opts` names, waiting at most `opts.timeout` per
/// call. Fails as `resolve_endpoint` and `control_client::connect` do.
caf::expected<control_client> connect_node(const endpoint_options& opts);

/// Resolves the endpoint and asks the node; the one path every command
/// takes. Fails on no answer, a malformed reply or an error reply, whose
/// message it returns.
template <class Request>
caf::expected<typename Request::reply_type>
ask_node(const endpoint_options& opts, Request request) {
  auto client = connect_node(opts);
  if (!client)
    return std::move(client.error());
  return client->call(std::move(request));
}

} // namespace herald::cli
