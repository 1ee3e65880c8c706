#pragma once

/// A client of a node's control endpoint: sends one typed request of the
/// control protocol (see `control.hpp`) and waits, with a deadline, for
/// its reply.
///
/// ```cpp
/// auto client = control_client::connect("tcp://127.0.0.1:5701");
/// if (!client) ...;
/// control::dlq_list_request req;
/// req.filter.consumer = "EmailService";
/// auto reply = client->call(req);   // caf::expected<dlq_list_reply>
/// ```
///
/// The client owns a ZeroMQ context and one DEALER socket connected to the
/// endpoint; requests are numbered, so a late reply to a request that timed
/// out is recognised by its id and skipped.
///
/// Thread safety: a client is not thread-safe (its socket is a ZeroMQ
/// socket): use one from one thread at a time. Clients are independent of
/// each other and of any node in the process.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "herald/runtime/control.hpp"

namespace herald {

/// How a `control_client` talks to a node.
struct control_client_options {
  /// How long `call` waits for a reply, from sending the request.
  /// REQUIRES: > 0. Default: 5 s.
  std::chrono::milliseconds timeout{5000};

  /// Largest reply accepted, in bytes (also its largest string); a larger
  /// one is dropped by ZeroMQ and the call times out. A `dlq.show` carries
  /// a whole event, a `dlq.list` many dead letters. Default: 64 MiB.
  size_t max_reply = size_t{64} * 1024 * 1024;

  /// CurveZMQ keys, each as Z85 text (40 characters). Not yet used: herald
  /// does not run CURVE yet, so `connect` refuses options that set any of
  /// them rather than talk in the clear to a peer the caller meant to
  /// authenticate. Default: all empty.
  struct curve_keys {
    /// The node's public key.
    std::string server_key;
    /// This client's public key.
    std::string public_key;
    /// This client's secret key.
    std::string secret_key;
  } curve;
};

/// A connection to one node's control endpoint. Movable, not copyable; a
/// moved-from client may only be assigned to or destroyed.
class control_client {
public:
  /// Makes a client of the control endpoint `endpoint` (`tcp://HOST:PORT`
  /// or `ipc://PATH`). ZeroMQ connects in the background: a node that is
  /// not up yet is no error here, only a call that gets no reply is.
  /// Fails with `errc::invalid_argument` when `opts` sets CURVE keys or a
  /// timeout <= 0, and with `errc::io_error` naming the endpoint when
  /// ZeroMQ refuses it (e.g. a malformed endpoint).
  static caf::expected<control_client>
  connect(std::string endpoint, control_client_options opts = {});

  control_client(control_client&&) noexcept;
  control_client& operator=(control_client&&) noexcept;
  ~control_client();

  /// Sends `req` (its `id` replaced by the client's next one) and waits at
  /// most `options().timeout` for the reply with that id. Fails with
  ///  - `errc::timeout` naming the endpoint when no reply came in time;
  ///  - `errc::remote_error` carrying the node's message when the node
  ///    answered with an error reply;
  ///  - `errc::decode_error` naming the endpoint and the field when the
  ///    reply is malformed;
  ///  - `errc::io_error` when ZeroMQ fails.
  caf::expected<control::replay_reply> call(control::replay_request req);
  caf::expected<control::dlq_list_reply> call(control::dlq_list_request req);
  caf::expected<control::dlq_show_reply> call(control::dlq_show_request req);
  caf::expected<control::dlq_redrive_reply>
  call(control::dlq_redrive_request req);
  caf::expected<control::dlq_purge_reply> call(control::dlq_purge_request req);
  /// A `publish` reply is no error when the node refused one of the events:
  /// check `refused`. On a timeout, call again with the same `request_id`:
  /// the node publishes the events once (see `control::publish_request`).
  caf::expected<control::publish_reply> call(control::publish_request req);
  caf::expected<control::status_reply> call(control::status_request req);
  caf::expected<control::test_hooks_reply>
  call(control::test_hooks_request req);
  /// The cluster as the node sees it (`herald members`).
  caf::expected<control::members_reply> call(control::members_request req);
  /// A consumer group member's business with the node's stream
  /// (`group.lease`); an owner's refusal of the whole request is an error.
  caf::expected<control::group_lease_reply>
  call(control::group_lease_request req);
  /// A group as the node's stream's owner keeps it (`herald group
  /// describe`).
  caf::expected<control::group_describe_reply>
  call(control::group_describe_request req);
  /// Sets a group's offsets on the node's stream (`herald group
  /// reset-offsets`); refused while the group holds leases there.
  caf::expected<control::group_reset_reply>
  call(control::group_reset_request req);

  /// The endpoint this client talks to.
  const std::string& endpoint() const noexcept;

  /// The options it was made with.
  const control_client_options& options() const noexcept;

private:
  struct impl;
  explicit control_client(std::unique_ptr<impl> ptr);

  template <class Request>
  caf::expected<typename Request::reply_type> call_typed(Request& req);

  std::unique_ptr<impl> impl_;
};

} // namespace herald
