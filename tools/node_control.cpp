#include "node_control.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <string_view>

#include <fmt/format.h>

#include "cli_common.hpp"
#include "herald/core/config.hpp"
#include "herald/core/errc.hpp"

namespace herald::cli {

namespace {

CLI::Validator positive_seconds() {
  return CLI::Validator(
    [](std::string& text) -> std::string {
      try {
        if (std::stod(text) > 0)
          return {};
      } catch (const std::exception&) {
        return {}; // not a number: the conversion reports it
      }
      return fmt::format("{} is not a positive number of seconds", text);
    },
    ">0");
}

} // namespace

CLI::Validator control_endpoint() {
  return CLI::Validator(
    [](std::string& text) -> std::string {
      for (std::string_view scheme : {"tcp://", "ipc://"})
        if (text.starts_with(scheme) && text.size() > scheme.size())
          return {};
      return fmt::format("'{}' is not a control endpoint; use "
                         "tcp://HOST:PORT or ipc://PATH",
                         text);
    },
    "ENDPOINT");
}

void add_endpoint_options(CLI::App& cmd, endpoint_options& opts,
                          std::function<void()> extra_check) {
  auto* control =
    cmd
      .add_option("--control", opts.control,
                  "the node's control endpoint, e.g. tcp://127.0.0.1:5701: "
                  "the control= of the line the node logs at start")
      ->check(control_endpoint());
  auto* config =
    cmd
      .add_option("--config", opts.config,
                  "the node's configuration file (YAML), to read its "
                  "'control' endpoint from")
      ->check(CLI::ExistingFile);
  control->excludes(config);
  cmd
    .add_option("--timeout", opts.timeout,
                "seconds to wait for the node's answer")
    ->capture_default_str()
    ->check(positive_seconds());
  cmd.callback([control, config, check = std::move(extra_check)] {
    if (control->count() == 0 && config->count() == 0)
      throw CLI::RequiredError(
        "which node? pass its control endpoint with --control ENDPOINT or "
        "its configuration with --config NODE.yaml",
        CLI::ExitCodes::RequiredError);
    if (check)
      check();
  });
}

caf::expected<std::string> resolve_endpoint(const endpoint_options& opts) {
  if (!opts.control.empty())
    return opts.control;
  auto cfg = node_config::load_file(opts.config);
  if (!cfg)
    return std::move(cfg.error());
  std::string ep = cfg->control;
  constexpr std::string_view tcp = "tcp://";
  if (!ep.starts_with(tcp))
    return ep;
  auto colon = ep.rfind(':');
  if (colon == std::string::npos || colon < tcp.size())
    return ep;
  auto host = ep.substr(tcp.size(), colon - tcp.size());
  auto port = ep.substr(colon + 1);
  if (port == "*")
    return cfg->origin.locate(
      "control", ep,
      make_error(errc::invalid_config,
                 fmt::format("the control endpoint is '{}', a port the node "
                             "picks when it starts; pass --control with the "
                             "port the node logged at start (control=... in "
                             "its 'started' line)",
                             ep)));
  if (host == "*" || host == "0.0.0.0")
    return fmt::format("tcp://127.0.0.1:{}", port);
  return ep;
}

caf::expected<control_client> connect_node(const endpoint_options& opts) {
  auto ep = resolve_endpoint(opts);
  if (!ep)
    return std::move(ep.error());
  control_client_options co;
  co.timeout =
    std::max(from_seconds(opts.timeout), std::chrono::milliseconds{1});
  return control_client::connect(std::move(*ep), std::move(co));
}

} // namespace herald::cli
