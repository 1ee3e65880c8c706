// The service actor of a consumer, spawned from its `service_fn` inside a
// catch-all. CAF 0.17 ends an actor whose message handler throws, whatever
// its exception handler says; a service that fails one event must not lose
// its state and every request queued behind it. So the factory's behavior
// is not the actor's behavior: it is invoked from the actor's default
// handler, inside a try block, and what it returns (a value, an error, a
// response promise to deliver later) becomes the answer as usual.

#include <exception>
#include <utility>

#include <caf/detail/invoke_result_visitor.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/local_actor.hpp>
#include <caf/message_handler.hpp>
#include <caf/message_view.hpp>
#include <caf/result.hpp>
#include <caf/skip.hpp>

#include "herald/actors/history.hpp"
#include "herald/core/errc.hpp"
#include "shard.hpp"

namespace herald::detail {

namespace {

/// Keeps the service actor's behavior non-empty (an actor without one
/// ends); never sent.
using keep_alive_atom = caf::atom_constant<caf::atom("hkeepalive")>;

// The error an exception becomes: its text, and whether retrying helps.
caf::error error_of(const std::exception_ptr& ex) {
  try {
    std::rethrow_exception(ex);
  } catch (const non_retryable_error& e) {
    return make_error(errc::non_retryable, e.what());
  } catch (const std::exception& e) {
    return make_error(errc::handler_failed, e.what());
  } catch (...) {
    return make_error(errc::handler_failed, "unknown exception");
  }
}

// What a handler of the service's behavior returned.
struct captured_result : caf::detail::invoke_result_visitor {
  enum { nothing, value, failure, later } kind = nothing;
  caf::message msg;
  caf::error err;

  void operator()() override {
    kind = later; // a response promise, delivered later
  }
  void operator()(caf::error& x) override {
    if (x) {
      kind = failure;
      err = std::move(x);
    } else {
      kind = value; // an empty caf::error: success
    }
  }
  void operator()(caf::message& x) override {
    kind = value;
    msg = std::move(x);
  }
  void operator()(const caf::none_t&) override {
    kind = value;
  }
};

// Invokes `inner` on `msg` inside a try block: what its handler returned
// (a value, an error, a response promise to deliver later) or the error
// its exception becomes.
caf::result<caf::message> invoke_guarded(caf::behavior& inner,
                                         caf::message& msg) {
  captured_result r;
  try {
    switch (inner(r, msg)) {
    case caf::match_case::no_match:
      return caf::sec::unexpected_message;
    case caf::match_case::skip:
      return caf::skip();
    case caf::match_case::match:
      break;
    }
  } catch (...) {
    return error_of(std::current_exception());
  }
  switch (r.kind) {
  case captured_result::failure:
    return std::move(r.err);
  case captured_result::later:
    return caf::delegated<caf::message>{};
  default:
    return std::move(r.msg);
  }
}

caf::behavior supervised(caf::event_based_actor* self, service_fn factory) {
  // Exceptions outside a message handler (in the factory, in a response
  // handler) end the actor with the exception's text as its exit reason.
  self->set_exception_handler(
    [](caf::scheduled_actor*, std::exception_ptr& ex) -> caf::error {
      return error_of(ex);
    });
  auto inner = factory(self);
  self->set_default_handler(
    [inner](caf::scheduled_actor*,
            caf::message_view& x) mutable -> caf::result<caf::message> {
      auto msg = x.move_content_to_message();
      return invoke_guarded(inner, msg);
    });
  return {
    [](keep_alive_atom) {
      // nop
    },
  };
}

} // namespace

caf::actor spawn_service(caf::local_actor* parent, const service_fn& factory) {
  return parent->spawn(supervised, factory);
}

} // namespace herald::detail

namespace herald {

caf::behavior behind(caf::behavior inner, before_handling before) {
  caf::message_handler gate{
    [inner, before](const event& ev) mutable -> caf::result<caf::message> {
      if (auto err = before(ev))
        return err;
      auto msg = caf::make_message(ev);
      return detail::invoke_guarded(inner, msg);
    }};
  return gate.or_else(inner);
}

} // namespace herald
