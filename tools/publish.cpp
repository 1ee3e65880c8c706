#include "publish.hpp"

#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <istream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_common.hpp"
#include "herald/core/codec.hpp"
#include "herald/core/config.hpp"
#include "herald/core/errc.hpp"
#include "herald/core/event.hpp"
#include "herald/runtime/control.hpp"
#include "herald/runtime/control_client.hpp"
#include "node_control.hpp"

namespace herald::cli {

namespace {

constexpr std::string_view prog = "herald";

// Bytes of a publish request besides its events (v, id, op, request_id and
// the events array's header), rounded up generously.
constexpr size_t request_overhead = 256;

struct publish_state {
  // Through a running node.
  std::string control;
  std::string file;
  double timeout = 5;
  int retries = 3;
  std::string request_id;
  size_t max_message_size = node_config{}.transport.max_message_size;
  // From a throw-away node (--standalone).
  bool standalone = false;
  node_options node;
  std::string source;
  int64_t wait_subscribers = 0;
  double wait_timeout = 5;
  // Both.
  std::string type;
  std::string json;
  CLI::App* app = nullptr;
};

// Accepts a JSON object or `-`; otherwise says what is wrong and how to
// pass one.
CLI::Validator json_object_or_stdin() {
  return CLI::Validator(
    [](std::string& text) -> std::string {
      if (text == "-")
        return {};
      try {
        if (nlohmann::json::parse(text).is_object())
          return {};
        return "the payload must be a JSON object, e.g. "
               "'{\"user_id\": \"...\"}'";
      } catch (const nlohmann::json::parse_error& e) {
        return fmt::format("not valid JSON ({}); pass the payload as one "
                           "quoted argument, e.g. '{{\"user_id\": \"...\"}}', "
                           "or one object per line with --file or -",
                           e.what());
      }
    },
    "JSON");
}

// --- through a running node -------------------------------------------------

// The lines of one batch, sent as one publish request.
struct batch {
  control::publish_request request;
  /// The input line of each event (0: the command-line argument).
  std::vector<uint64_t> lines;
  size_t bytes = request_overhead;
};

// Sends batches to the node and prints their acks; remembers how many
// were published.
class publisher {
public:
  publisher(const publish_state& st, control_client client, std::string base)
      : st_(st), client_(std::move(client)), base_(std::move(base)) {}

  // Adds the event of `line`, sending the batch first when it is full.
  // Returns an error message, or nothing.
  std::optional<std::string> add(uint64_t line, payload data) {
    control::publish_event ev{st_.type, std::move(data)};
    auto size =
      encode_payload(payload{{"type", ev.type}, {"data", ev.data}}).size();
    if (size + request_overhead + base_.size() > st_.max_message_size) {
      if (auto err = flush())
        return err;
      return fmt::format("{}an event of {} bytes does not fit in one "
                         "publish request: the node takes requests of up to "
                         "{} bytes (its transport.max_message_size); raise "
                         "transport.max_message_size in the node's config "
                         "and pass the same value as --max-message-size{}",
                         where(line), size, st_.max_message_size,
                         published_note());
    }
    if (current_.request.events.size() >= control::max_publish_events
        || current_.bytes + size + base_.size() > st_.max_message_size)
      if (auto err = flush())
        return err;
    current_.request.events.push_back(std::move(ev));
    current_.lines.push_back(line);
    current_.bytes += size;
    return std::nullopt;
  }

  // Sends the batch built so far, if any, and prints its acks. Returns an
  // error message, or nothing.
  std::optional<std::string> flush() {
    if (current_.request.events.empty())
      return std::nullopt;
    batch b = std::move(current_);
    current_ = batch{};
    b.request.request_id = fmt::format("{}:{}", base_, batches_++);
    auto reply = client_.call(b.request);
    // A lost reply: the same request again, which the node publishes once.
    for (int i = 0;
         i < st_.retries && !reply && is(reply.error(), errc::timeout); ++i)
      reply = client_.call(b.request);
    if (!reply) {
      auto msg = message_of(reply.error());
      if (!is(reply.error(), errc::timeout))
        return fmt::format("{}{}", msg, published_note());
      auto what =
        b.lines.front() == 0
          ? std::string{"the event"}
          : fmt::format("the {} events of lines {} to {}", b.lines.size(),
                        b.lines.front(), b.lines.back());
      return fmt::format("{} (sent {} times); {} may or may not be "
                         "published: run the same command again with "
                         "--request-id {} within 10 minutes to publish "
                         "{} once{}",
                         msg, st_.retries + 1, what, base_,
                         b.lines.size() == 1 ? "it" : "them", published_note());
    }
    auto& acks = reply->acks;
    for (auto& a : acks) {
      nlohmann::ordered_json out{
        {"id", a.id}, {"stream", a.stream}, {"seq", a.seq}};
      print_line(out.dump());
    }
    published_ += acks.size();
    if (reply->refused) {
      auto k = *reply->refused;
      auto line = k < b.lines.size() ? b.lines[k] : b.lines.back();
      return fmt::format("{}{}{}", where(line), reply->reason,
                         published_note());
    }
    if (acks.size() != b.request.events.size())
      return fmt::format("the node acknowledged {} of {} events without "
                         "saying why{}",
                         acks.size(), b.request.events.size(),
                         published_note());
    return std::nullopt;
  }

  // "line N: " for an input line, nothing for the argument.
  static std::string where(uint64_t line) {
    return line == 0 ? std::string{} : fmt::format("line {}: ", line);
  }

  // What was published before a failure, when the input had lines.
  std::string published_note() const {
    if (st_.json != "-" && st_.file.empty())
      return {};
    return fmt::format("; published the {} event{} before it", published_,
                       published_ == 1 ? "" : "s");
  }

private:
  const publish_state& st_;
  control_client client_;
  std::string base_;
  batch current_;
  uint64_t batches_ = 0;
  uint64_t published_ = 0;
};

int run_through_node(const publish_state& st) {
  control_client_options co;
  co.timeout = std::max(from_seconds(st.timeout), std::chrono::milliseconds{1});
  auto client = control_client::connect(st.control, std::move(co));
  if (!client)
    return fail(prog, message_of(client.error()));
  auto base = st.request_id.empty() ? make_uuid_v7() : st.request_id;
  publisher pub{st, std::move(*client), std::move(base)};

  if (st.file.empty() && st.json != "-") {
    if (auto err = pub.add(0, nlohmann::json::parse(st.json)))
      return fail(prog, *err);
    if (auto err = pub.flush())
      return fail(prog, *err);
    return exit_ok;
  }
  std::ifstream file;
  std::istream* in = &std::cin;
  if (!st.file.empty()) {
    file.open(st.file, std::ios::binary);
    if (!file)
      return fail(prog, fmt::format("cannot read '{}'", st.file));
    in = &file;
  }
  std::string text;
  uint64_t line = 0;
  while (std::getline(*in, text)) {
    ++line;
    if (text.find_first_not_of(" \t\r") == std::string::npos)
      continue;
    // A bad line ends the run once the lines before it are published.
    std::optional<std::string> bad;
    payload data;
    try {
      data = nlohmann::json::parse(text);
      if (!data.is_object())
        bad = fmt::format("line {}: expected a JSON object, got {}", line,
                          data.type_name());
    } catch (const nlohmann::json::parse_error& e) {
      bad = fmt::format("line {}: not valid JSON ({})", line, e.what());
    }
    if (bad) {
      if (auto err = pub.flush())
        return fail(prog, *err);
      return fail(prog, *bad + pub.published_note());
    }
    if (auto err = pub.add(line, std::move(data)))
      return fail(prog, *err);
  }
  if (in->bad())
    return fail(
      prog, fmt::format("cannot read {} after line {}",
                        st.file.empty() ? "stdin" : "'" + st.file + "'", line));
  if (auto err = pub.flush())
    return fail(prog, *err);
  return exit_ok;
}

// --- from a throw-away node (--standalone) -----------------------------------

int run_standalone(const publish_state& args) {
  auto data = nlohmann::json::parse(args.json);
  auto n = start_node(args.node);
  if (!n)
    return fail(prog, message_of(n.error()));
  auto& nd = **n;
  // Checked before waiting for subscribers: a bad payload fails at once.
  if (auto err = nd.events().validate(args.type, data))
    return fail(prog, message_of(err));
  publish_options opts;
  opts.source = args.source;
  if (auto* spec = nd.events().find(args.type); opts.source.empty() && spec)
    opts.source = spec->producer;
  if (args.wait_subscribers > 0
      && !nd.wait_for_subscribers(args.wait_subscribers,
                                  from_seconds(args.wait_timeout)))
    return fail(prog, fmt::format("timed out after {:g}s waiting for {} "
                                  "subscriber(s) at {}; start them with "
                                  "--peer {} or raise --wait-timeout",
                                  args.wait_timeout, args.wait_subscribers,
                                  nd.endpoint(), nd.endpoint()));
  auto receipt = nd.bus().publish(args.type, std::move(data), opts);
  if (!receipt)
    return fail(prog, message_of(receipt.error()));
  // Acknowledged only once durable in this node's log.
  if (auto err = receipt->wait())
    return fail(prog, message_of(err));
  nlohmann::ordered_json out{{"id", receipt->id}, {"seq", receipt->seq}};
  print_line(out.dump());
  nd.stop(); // flushes what was sent
  return exit_ok;
}

} // namespace

publish_command add_publish_command(CLI::App& app) {
  auto st = std::make_shared<publish_state>();
  auto* cmd = app.add_subcommand(
    "publish",
    "Validate events against the catalog and publish them through a running "
    "node (--control): it appends them to its durable log and acknowledges "
    "each once durable; one {\"id\",\"stream\",\"seq\"} line per event on "
    "stdout.");
  st->app = cmd;
  auto* control =
    cmd
      ->add_option("--control", st->control,
                   "the control endpoint of the running node to publish "
                   "through, e.g. tcp://127.0.0.1:5701: the control= of the "
                   "line the node logs at start. The node's service must be "
                   "the catalog producer of TYPE")
      ->check(control_endpoint());
  auto* file =
    cmd
      ->add_option("--file", st->file,
                   "publish one event per line of FILE, each a JSON object "
                   "(blank lines skipped); stops at the first bad line, "
                   "having published the lines before it")
      ->check(CLI::ExistingFile);
  auto* timeout =
    cmd
      ->add_option("--timeout", st->timeout,
                   "seconds to wait for the node's answer to each batch")
      ->capture_default_str()
      ->check(at_least(0.001));
  auto* retries =
    cmd
      ->add_option("--retries", st->retries,
                   "times a batch without an answer is sent again, with the "
                   "same request id (the node publishes it once)")
      ->capture_default_str()
      ->check(at_least(0));
  auto* request_id =
    cmd
      ->add_option("--request-id", st->request_id,
                   "the id of this publish (batch k is sent as ID:k); run a "
                   "command again with the same ID and input within 10 "
                   "minutes, and the node publishes nothing twice. Default: "
                   "a fresh UUID")
      ->check(CLI::Validator(
        [](std::string& text) -> std::string {
          if (text.empty() || text.size() > control::max_request_id - 24)
            return fmt::format("must be 1 to {} bytes",
                               control::max_request_id - 24);
          return {};
        },
        "ID"));
  auto* max_size =
    cmd
      ->add_option("--max-message-size", st->max_message_size,
                   "the node's transport.max_message_size in bytes: a batch "
                   "never exceeds it, and a line that cannot fit is refused")
      ->capture_default_str()
      ->check(at_least(1024));

  auto* standalone = cmd->add_flag(
    "--standalone", st->standalone,
    "WARNING: not for delivery. Publish from a throw-away node started with "
    "--config instead of a running one: the event stays in that node's own "
    "data directory, and a consumer not connected at that moment never gets "
    "it. For tests and demos only");
  st->node.log_level = "warn"; // stderr shows problems, not the lifecycle
  add_node_options(*cmd, st->node, false);
  auto* config = cmd->get_option("--config");
  config->required(false)->description(
    "with --standalone: the throw-away node's configuration file (YAML)");
  for (auto* name : {"--peer", "--log-level", "--data-dir"}) {
    auto* opt = cmd->get_option(name);
    opt->description("with --standalone: " + opt->get_description());
  }
  auto* source = cmd->add_option(
    "--source", st->source,
    "with --standalone: producing service. Default: the catalog's producer");
  auto* wait_subs =
    cmd
      ->add_option("--wait-subscribers", st->wait_subscribers,
                   "with --standalone: wait until N subscriptions reached the "
                   "throw-away node first")
      ->capture_default_str()
      ->check(at_least(0));
  auto* wait_timeout =
    cmd
      ->add_option("--wait-timeout", st->wait_timeout,
                   "with --standalone: seconds to wait for --wait-subscribers")
      ->capture_default_str()
      ->check(at_least(0));

  cmd->add_option("TYPE", st->type, "event type, e.g. user.account.created")
    ->required();
  auto* json = cmd
                 ->add_option("JSON", st->json,
                              "the payload, a JSON object; - reads one object "
                              "per line from stdin")
                 ->check(json_object_or_stdin());
  control->excludes(standalone);
  file->excludes(json);

  cmd->callback([=, raw = st.get()] {
    auto usage = [](const std::string& why) {
      throw CLI::ValidationError(why, CLI::ExitCodes::ValidationError);
    };
    if (file->count() == 0 && json->count() == 0)
      usage("no payload: pass it as JSON, or one object per line with "
            "--file FILE or - (stdin)");
    if (raw->standalone) {
      if (config->count() == 0)
        usage("--standalone needs --config, the throw-away node's "
              "configuration");
      if (file->count() > 0 || raw->json == "-")
        usage("--standalone publishes one event, given as JSON; publish "
              "lines through a running node with --control");
      for (auto* opt : {timeout, retries, request_id, max_size})
        if (opt->count() > 0)
          usage(opt->get_name() + " is for --control, not --standalone");
      return;
    }
    if (control->count() == 0)
      usage("which node? pass its control endpoint with --control ENDPOINT "
            "(the control= of the line it logs at start); --standalone "
            "publishes from a throw-away node instead, which consumers that "
            "are not connected at that moment never hear of");
    for (auto* opt :
         {config, source, wait_subs, wait_timeout, cmd->get_option("--peer"),
          cmd->get_option("--data-dir"), cmd->get_option("--log-level")})
      if (opt->count() > 0)
        usage(opt->get_name()
              + " is for --standalone; with --control the "
                "running node publishes as its own service");
  });

  auto run = [st]() -> int {
    return st->standalone ? run_standalone(*st) : run_through_node(*st);
  };
  return {cmd, run};
}

} // namespace herald::cli
