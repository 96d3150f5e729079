// The MessagePack codec and the envelope: round trips, malformed input, schema agreement.
#include <gtest/gtest.h>

#include <bulkhead/wire.hpp>

#include "common/schemas.hpp"

namespace bulkhead {
namespace {

using wire::Message;

TEST(Wire, RequestRoundTripsWithBinary) {
  Image image{2, 1, "RGB", {1, 2, 3, 4, 5, 6}};
  Message sent = Message::request(7, "transform_pil_image", {{"image", wire::image_to_json(image)}});
  std::string bytes = wire::encode(sent);
  Message got = wire::decode(bytes.data(), bytes.size());
  ASSERT_TRUE(got.is_request());
  EXPECT_EQ(got.id, 7u);
  EXPECT_EQ(got.method, "transform_pil_image");
  Image back = wire::image_from_json(got.params["image"]);
  EXPECT_EQ(back.data, image.data);
  EXPECT_EQ(back.width, 2);
}

TEST(Wire, ResponseAndNotificationRoundTrip) {
  Message error = Message::error_response(3, "hook_failed", "boom");
  std::string bytes = wire::encode(error);
  Message got = wire::decode(bytes.data(), bytes.size());
  EXPECT_TRUE(got.is_response());
  EXPECT_EQ(got.error["code"], "hook_failed");

  Message log = Message::notification("log", {{"level", "info"}, {"message", "hi"}});
  bytes = wire::encode(log);
  got = wire::decode(bytes.data(), bytes.size());
  EXPECT_TRUE(got.is_notification());
  EXPECT_EQ(got.params["message"], "hi");
}

TEST(Wire, RejectsWhatIsNotAnEnvelope) {
  const std::string garbage = "\xc1\xc1\xc1 not msgpack";
  EXPECT_THROW(wire::decode(garbage.data(), garbage.size()), wire::DecodeError);
  std::string map_not_array = wire::encode(Message::notification("x", nullptr)).substr(1);
  EXPECT_THROW(wire::decode(map_not_array.data(), map_not_array.size()), wire::DecodeError);
  // [5, 1, "m", {}]: an unknown kind
  const std::string bad_kind = "\x94\x05\x01\xa1m\x80";
  EXPECT_THROW(wire::decode(bad_kind.data(), bad_kind.size()), wire::DecodeError);
  // 200 nested arrays: refused before it can exhaust the stack
  std::string deep(200, '\x91');
  deep += '\xc0';
  EXPECT_THROW(wire::decode(deep.data(), deep.size()), wire::DecodeError);
}

TEST(Wire, ImageSizeMustMatchItsData) {
  Json image = wire::image_to_json(Image{4, 4, "RGB", std::vector<std::uint8_t>(10)});
  try {
    wire::image_from_json(image);
    FAIL() << "a 4x4 RGB image with 10 bytes was accepted";
  } catch (const wire::DecodeError& e) {
    EXPECT_NE(std::string(e.what()).find("needs 48"), std::string::npos) << e.what();
  }
}

Message image_request(int side) {
  Image image{side, side, "RGB", std::vector<std::uint8_t>(std::size_t(side) * side * 3)};
  for (std::size_t i = 0; i < image.data.size(); ++i) image.data[i] = std::uint8_t(i * 31);
  return Message::request(9, "transform_pil_image", {{"image", wire::image_to_json(image)}});
}

TEST(Wire, LargeBinsTravelAsFramesOfTheirOwn) {
  const Message sent = image_request(300);
  const wire::Frames frames = wire::encode_frames(sent, /*attachments=*/true);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_LT(frames[0].size(), 100u) << "the pixels stayed in the envelope";
  EXPECT_EQ(frames[1].size(), 300u * 300 * 3);
  const Message got = wire::decode_frames(frames);
  EXPECT_EQ(got.params, sent.params);

  EXPECT_EQ(wire::encode_frames(sent, /*attachments=*/false).size(), 1u) << "to a host that does not take them";
  EXPECT_EQ(wire::encode_frames(image_request(8), true).size(), 1u) << "a small bin is cheaper inline";
}

TEST(Wire, BinsPastTheAttachmentLimitStayInline) {
  Json bins = Json::array();
  for (int i = 0; i < 70; ++i) bins.push_back(Json::binary(std::vector<std::uint8_t>(wire::kAttachmentMinBytes, std::uint8_t(i))));
  const Message sent = Message::response(1, {{"bins", bins}});
  const wire::Frames frames = wire::encode_frames(sent, true);
  EXPECT_EQ(frames.size(), wire::kMaxAttachments + 1);
  EXPECT_EQ(wire::decode_frames(frames).result, sent.result);
}

// frames: the envelope [1, 1, nil, value], then these attachments.
wire::Frames reply_with(const Json& value, const std::vector<std::string>& attachments) {
  wire::Frames frames;
  frames.emplace_back(wire::encode(Message::response(1, value)));
  for (const auto& bytes : attachments) frames.emplace_back(bytes.data(), bytes.size());
  return frames;
}

// The stand-in for frame `number` (ext type `type`), as a Json binary that packs as that ext.
Json frame_ref(std::uint8_t number, std::uint8_t type = wire::kAttachmentExtType) {
  return Json::binary({0, 0, 0, number}, type);
}

std::string decode_error(const wire::Frames& frames) {
  try {
    wire::decode_frames(frames);
  } catch (const wire::DecodeError& e) {
    return e.what();
  }
  return "accepted";
}

TEST(Wire, AttachmentsNamedWronglyAreRefusedSayingHow) {
  EXPECT_EQ(wire::decode_frames(reply_with({{"data", frame_ref(1)}}, {"pixels"})).result["data"].get_binary(),
            Json::binary({'p', 'i', 'x', 'e', 'l', 's'}).get_binary());
  EXPECT_EQ(decode_error(reply_with({{"data", frame_ref(1)}}, {})), "the message names attachment frame 1 but has 0 attachments");
  EXPECT_EQ(decode_error(reply_with({{"data", frame_ref(1)}}, {"a", "b"})), "attachment frame 2 is named nowhere in the message");
  EXPECT_EQ(decode_error(reply_with({{"a", frame_ref(1)}, {"b", frame_ref(1)}}, {"a"})), "attachment frame 1 is named twice");
  EXPECT_EQ(decode_error(reply_with({{"data", frame_ref(1, 7)}}, {"a"})), "MessagePack ext type 7 is not used by the protocol");
  EXPECT_EQ(decode_error(reply_with(nullptr, std::vector<std::string>(wire::kMaxAttachments + 1, "x"))),
            "a message has 65 attachments, over the limit of 64");
}

TEST(Wire, EveryMessageTheCodeBuildsMatchesTheEnvelopeSchema) {
  const auto& schemas = Schemas::instance();
  for (const Message& m : {Message::request(1, "on_step_end", Json::object()), Message::response(1, nullptr),
                           Message::error_response(1, "unknown_method", "no"), Message::notification("shutdown", {{"reason", "x"}})}) {
    std::string bytes = wire::encode(m);
    Message decoded = wire::decode(bytes.data(), bytes.size());
    auto errors = schemas.validate("protocol/envelope.schema.json", decoded.to_json());
    EXPECT_TRUE(errors.empty()) << m.to_json().dump() << ": " << (errors.empty() ? "" : errors[0].to_string());
  }
  EXPECT_FALSE(schemas.validate("protocol/envelope.schema.json", Json::array({1, 2})).empty());
}

}  // namespace
}  // namespace bulkhead
