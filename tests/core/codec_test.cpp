#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <msgpack.hpp>

#include "herald/core/codec.hpp"
#include "herald/core/errc.hpp"

using namespace herald;

namespace {

// The header's views point at literals and these statics.
envelope_header make_header(std::string_view type) {
  static const std::string id = make_uuid_v7();
  static const std::string stream = make_uuid_v4();
  envelope_header h;
  h.event_type = type;
  h.timestamp_us = 1'700'000'000'123'456;
  h.id = id;
  h.source = "UserService";
  h.key = "k-1";
  h.stream = stream;
  h.seq = 42;
  h.type_seq = 7;
  h.schema_version = 3;
  return h;
}

std::string encode_one(const envelope_header& h, const payload& data) {
  std::string out;
  encode(h, data, out);
  return out;
}

// The bytes `hex` spells, two digits a byte.
std::string from_hex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(
      static_cast<char>(std::stoi(std::string{hex.substr(i, 2)}, nullptr, 16)));
  return out;
}

// Packs an arbitrary MessagePack value, e.g. a hostile envelope.
template <class F> std::string pack_with(F f) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk{buf};
  f(pk);
  return std::string{buf.data(), buf.size()};
}

// An envelope of the three required fields whose `data` `pack_data` packs.
template <class F> std::string pack_envelope(F pack_data) {
  return pack_with([&](auto& pk) {
    pk.pack_map(4);
    pk.pack(std::string{"event_type"});
    pk.pack(std::string{"user.account.created"});
    pk.pack(std::string{"timestamp"});
    pk.pack(1);
    pk.pack(std::string{"id"});
    pk.pack(std::string{"x"});
    pk.pack(std::string{"data"});
    pack_data(pk);
  });
}

} // namespace

TEST_CASE("the codec round-trips a table of envelopes", "[core][codec]") {
  struct row {
    const char* what;
    payload data;
    std::string traceparent;
  };
  std::vector<row> rows{
    {"seed payload",
     {{"user_id", "0190b6d2-3c4e-7a00-8000-000000000001"},
      {"email", "user1@example.com"},
      {"registration_source", "web"}},
     ""},
    {"empty data", payload::object(), ""},
    {"unicode", {{"name", "Zoë 日本語 🚀"}, {"empty", ""}}, ""},
    {"nested",
     {{"address",
       {{"city", "Zürich"}, {"geo", {{"lat", 47.37}, {"lon", 8.54}}}}},
      {"tags", {"a", "b", payload::array()}},
      {"n", -12},
      {"big", 18446744073709551615ULL},
      {"ok", true},
      {"nothing", nullptr}},
     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
  };
  for (auto& r : rows) {
    SECTION(r.what) {
      auto h = make_header("user.account.created");
      h.traceparent = r.traceparent;
      auto ev = decode(encode_one(h, r.data));
      REQUIRE(ev);
      CHECK(ev->type() == h.event_type);
      CHECK(ev->timestamp_us() == h.timestamp_us);
      CHECK(ev->id() == h.id);
      CHECK(ev->source() == h.source);
      CHECK(ev->key() == h.key);
      CHECK(ev->stream() == h.stream);
      CHECK(ev->seq() == h.seq);
      CHECK(ev->type_seq() == h.type_seq);
      CHECK(ev->schema_version() == h.schema_version);
      CHECK(ev->traceparent() == h.traceparent);
      CHECK(ev->data() == r.data);
      CHECK_FALSE(ev->redelivered());
      CHECK(ev->as_redelivered().redelivered());
    }
  }
}

TEST_CASE("the envelope shows as JSON in the seed's field order",
          "[core][codec]") {
  auto h = make_header("user.account.deleted");
  h.timestamp_us = 1'704'067'200'000'001; // 2024-01-01T00:00:00.000001Z
  auto ev = decode(encode_one(h, {{"user_id", "u"}}));
  REQUIRE(ev);
  auto j = ev->to_json();
  std::vector<std::string> keys;
  for (auto& [k, v] : j.items())
    keys.push_back(k);
  REQUIRE(keys.size() >= 6);
  CHECK(keys[0] == "event_type");
  CHECK(keys[1] == "timestamp");
  CHECK(keys[2] == "data");
  CHECK(keys[3] == "id");
  CHECK(j["timestamp"] == "2024-01-01T00:00:00.000001Z");
}

TEST_CASE("the decoder rejects hostile frames with an error", "[core][codec]") {
  auto good =
    encode_one(make_header("user.account.created"), {{"email", "a@b.io"}});

  SECTION("every truncation of a valid frame") {
    for (size_t n = 0; n < good.size(); ++n) {
      auto ev = decode(std::string_view{good}.substr(0, n));
      REQUIRE_FALSE(ev);
      CHECK(is(ev.error(), errc::decode_error));
    }
  }
  SECTION("a 5-byte array32 header claiming 4 billion elements") {
    std::string frame{"\xdd\xff\xff\xff\xff", 5};
    auto ev = decode(frame);
    REQUIRE_FALSE(ev);
    CHECK(is(ev.error(), errc::decode_error));
    CHECK_THAT(message_of(ev.error()), Catch::Contains("limit"));
  }
  SECTION("a map32 header claiming 4 billion entries") {
    std::string frame{"\xdf\xff\xff\xff\xff", 5};
    auto ev = decode(frame);
    REQUIRE_FALSE(ev);
    CHECK(is(ev.error(), errc::decode_error));
  }
  SECTION("100,000 levels of nesting") {
    std::string frame(100'000, '\x91'); // fixarray of one element, nested
    frame.push_back('\xc0');
    auto ev = decode(frame);
    REQUIRE_FALSE(ev);
    CHECK(is(ev.error(), errc::decode_error));
  }
  SECTION("a frame over the maximum size") {
    decode_limits lim;
    lim.max_frame = 1024;
    std::string big(2048, 'x');
    auto frame =
      encode_one(make_header("user.account.created"), {{"blob", big}});
    auto ev = decode(frame, lim);
    REQUIRE_FALSE(ev);
    CHECK(is(ev.error(), errc::frame_too_large));
    CHECK_THAT(message_of(ev.error()), Catch::Contains("1024"));
  }
  SECTION("trailing garbage") {
    auto ev = decode(good + "x");
    REQUIRE_FALSE(ev);
    CHECK_THAT(message_of(ev.error()), Catch::Contains("trailing"));
  }
  SECTION("not a map") {
    auto ev = decode(pack_with([](auto& pk) {
      pk.pack(42);
    }));
    REQUIRE_FALSE(ev);
    CHECK_THAT(message_of(ev.error()), Catch::Contains("must be a map"));
  }
  SECTION("a field of the wrong type") {
    auto frame = pack_with([](auto& pk) {
      pk.pack_map(4);
      pk.pack(std::string{"event_type"});
      pk.pack(std::string{"user.account.created"});
      pk.pack(std::string{"timestamp"});
      pk.pack(std::string{"yesterday"});
      pk.pack(std::string{"id"});
      pk.pack(std::string{"x"});
      pk.pack(std::string{"data"});
      pk.pack_map(0);
    });
    auto ev = decode(frame);
    REQUIRE_FALSE(ev);
    CHECK_THAT(message_of(ev.error()),
               Catch::Contains("'timestamp' must be an unsigned integer"));
  }
  SECTION("a missing required field") {
    auto frame = pack_with([](auto& pk) {
      pk.pack_map(1);
      pk.pack(std::string{"event_type"});
      pk.pack(std::string{"user.account.created"});
    });
    auto ev = decode(frame);
    REQUIRE_FALSE(ev);
    CHECK_THAT(message_of(ev.error()), Catch::Contains("lacks"));
  }
  SECTION("data that is not a map") {
    auto frame = pack_envelope([](auto& pk) {
      pk.pack_array(0);
    });
    auto ev = decode(frame);
    REQUIRE_FALSE(ev);
    CHECK_THAT(message_of(ev.error()), Catch::Contains("'data' must be a map"));
  }
}

// From the fuzzer (docs/fuzzing.md): a payload map whose key is itself a
// map holding bytes that are not UTF-8. The key was rendered as JSON text,
// and rendering threw out of event::data().
TEST_CASE("a payload with a map key that is no string is refused, naming "
          "where",
          "[core][codec][fuzz]") {
  SECTION("the input the fuzzer found") {
    auto frame = from_hex(
      "8aaa6576656e745f74797065b462696c6c696e672e691d006f6963652e706169"
      "64a974696d657374616d70cf00060a24181e4000a26964d92430313930613362"
      "322d376334642d376535662d386136622d316332643365346635613662a6736f"
      "75726365ab5573657253657276696365a36b65f1a3752431a673747265616da9"
      "757365722d6e6f6465a373657103a8747970655f73657103ae736368656d615f"
      "76657273696f6e01a46461746187a6616d6f756e74cb4029000000000000a342"
      "6967cf8000000000000000a362696ec4030001028aaa6576656e745f74656d61"
      "696cad61406578616da5636f756e74fda56c696e65739301a373737f75726374"
      "776f81a5655f73657103ae736f706c652e636f6db3726567697374726174696f"
      "6e5f736f75726365a3776562a7757365725f6964d92439623266316331652d6e"
      "65313131312d346134612d386238d4d4d4c0a26f6bd4c3d4");
    auto ev = decode(frame);
    REQUIRE_FALSE(ev);
    CHECK(is(ev.error(), errc::decode_error));
    CHECK_THAT(message_of(ev.error()),
               Catch::Contains("envelope field 'data'")
                 && Catch::Contains("map keys must be strings"));
  }
  SECTION("a bytes key deep in the payload, at its path") {
    auto frame = pack_envelope([](auto& pk) {
      pk.pack_map(1);
      pk.pack(std::string{"a"});
      pk.pack_array(2);
      pk.pack(1);
      pk.pack_map(1);
      pk.pack_bin(1);
      pk.pack_bin_body("\xa5", 1);
      pk.pack(true);
    });
    auto ev = decode(frame);
    REQUIRE_FALSE(ev);
    CHECK(message_of(ev.error())
          == "envelope field 'data'.a[1] has a map key of type bin (entry "
             "#0); map keys must be strings");
    size_t offset = 0;
    CHECK_FALSE(decode_next(frame, offset, nullptr));
  }
  SECTION("decode_payload refuses it too") {
    auto frame = pack_with([](auto& pk) {
      pk.pack_map(1);
      pk.pack(7);
      pk.pack(1);
    });
    auto j = decode_payload(frame);
    REQUIRE_FALSE(j);
    CHECK(message_of(j.error())
          == "the value at (root) has a map key of type int (entry #0); map "
             "keys must be strings");
  }
}

TEST_CASE("UUIDv7 ids are well formed and time ordered", "[core][codec]") {
  auto a = make_uuid_v7();
  std::this_thread::sleep_for(std::chrono::milliseconds{2});
  auto b = make_uuid_v7();
  REQUIRE(a.size() == 36);
  CHECK(a[14] == '7');
  CHECK((a[19] == '8' || a[19] == '9' || a[19] == 'a' || a[19] == 'b'));
  CHECK(a < b);
  CHECK(make_uuid_v4()[14] == '4');
}

TEST_CASE("a frame carrying several envelopes decodes one after another",
          "[core][codec]") {
  auto owner = std::make_shared<std::string>();
  for (int i = 1; i <= 3; ++i) {
    auto h = make_header("user.account.created");
    h.seq = static_cast<uint64_t>(i);
    encode(h, {{"n", i}}, *owner);
  }
  size_t offset = 0;
  std::vector<event> got;
  while (offset < owner->size()) {
    auto ev = decode_next(*owner, offset, owner);
    REQUIRE(ev);
    got.push_back(std::move(*ev));
  }
  REQUIRE(got.size() == 3);
  owner.reset(); // the events keep the buffer alive
  for (int i = 0; i < 3; ++i) {
    CHECK(got[i].seq() == static_cast<uint64_t>(i + 1));
    CHECK(got[i].data()["n"] == i + 1);
    CHECK(got[i].type() == "user.account.created");
    // Each event keeps exactly its own envelope: decoding it alone gives
    // the same event back (what a dead letter stores).
    auto alone = decode(got[i].envelope());
    REQUIRE(alone);
    CHECK(alone->seq() == got[i].seq());
    CHECK(alone->data() == got[i].data());
  }
}

TEST_CASE("an event maps onto a CloudEvents 1.0 structured JSON object",
          "[core][codec][cloudevents]") {
  auto h = make_header("user.account.created");
  h.timestamp_us = 1'704'067'200'000'001; // 2024-01-01T00:00:00.000001Z
  h.seq = 5'000'000'000;                  // past CloudEvents' 32-bit integers
  payload data{{"user_id", "u-1"}, {"email", "u1@example.com"}};
  SECTION("every required and optional attribute, in order") {
    auto ev = decode(encode_one(h, data));
    REQUIRE(ev);
    auto j = ev->to_cloudevent();
    std::vector<std::string> keys;
    for (auto& [k, v] : j.items())
      keys.push_back(k);
    CHECK(keys
          == std::vector<std::string>{
            "specversion", "id", "source", "type", "time", "subject",
            "datacontenttype", "heraldstream", "heraldseq", "heraldtypeseq",
            "heraldschemaversion", "data"});
    CHECK(j["specversion"] == "1.0");
    CHECK(j["id"] == h.id);
    CHECK(j["source"] == "UserService");
    CHECK(j["type"] == "user.account.created");
    CHECK(j["time"] == "2024-01-01T00:00:00.000001Z");
    CHECK(j["subject"] == "k-1");
    CHECK(j["datacontenttype"] == "application/json");
    CHECK(j["heraldstream"] == h.stream);
    CHECK(j["heraldseq"] == "5000000000");
    CHECK(j["heraldtypeseq"] == "7");
    CHECK(j["heraldschemaversion"] == 3);
    CHECK(j["data"] == data);
    // Extension names are lower-case letters and digits, at most 20.
    for (auto& k : keys) {
      CHECK(k.size() <= 20);
      CHECK(k.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789")
            == std::string::npos);
    }
  }
  SECTION("a trace context travels as the distributed-tracing extension") {
    h.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    auto ev = decode(encode_one(h, data));
    REQUIRE(ev);
    CHECK(ev->to_cloudevent()["traceparent"] == h.traceparent);
  }
}

TEST_CASE("RFC 3339 times parse to microseconds since the epoch",
          "[core][codec]") {
  struct row {
    const char* text;
    std::optional<int64_t> micros;
  };
  for (auto& r : std::vector<row>{
         {"1970-01-01T00:00:00Z", 0},
         {"2024-01-01T00:00:00.000001Z", 1'704'067'200'000'001},
         {"2024-01-01t00:00:00z", 1'704'067'200'000'000},
         {"2024-02-29T12:30:15.5Z", 1'709'209'815'500'000},
         {"2024-01-01T02:00:00+02:00", 1'704'067'200'000'000},
         {"2023-12-31T19:00:00.1234569-05:00", 1'704'067'200'123'456},
         {"1969-12-31T23:59:59Z", -1'000'000},
         {"2023-02-29T00:00:00Z", std::nullopt},
         {"2024-01-01 00:00:00Z", std::nullopt},
         {"2024-01-01T00:00:00", std::nullopt},
         {"2024-01-01T00:00:00.Z", std::nullopt},
         {"2024-01-01T24:00:00Z", std::nullopt},
         {"2024-01-01T00:00:00+0200", std::nullopt},
         {"30s", std::nullopt},
         {"", std::nullopt},
       }) {
    INFO(r.text);
    CHECK(parse_timestamp(r.text) == r.micros);
  }
  // What format_timestamp writes reads back.
  CHECK(parse_timestamp(format_timestamp(1'772'355'600'123'456))
        == 1'772'355'600'123'456);
}
