#include "messaging/live_hub.hpp"

#include <gtest/gtest.h>

namespace cw::messaging {
namespace {

class Recorder final : public Subscriber {
 public:
  void Push(const LiveEvent& event) override { cursors.push_back(event.cursor); }
  std::vector<std::int64_t> cursors;
};

LiveEvent EventFor(std::int64_t cursor, std::vector<std::string> audience) {
  LiveEvent e;
  e.cursor = cursor;
  e.audience = std::move(audience);
  e.frame = std::make_shared<const std::string>("{}");
  return e;
}

TEST(LiveHubTest, DeliversOnlyToTheAudienceInOrder) {
  LiveHub hub;
  auto ann = std::make_shared<Recorder>();
  auto bob = std::make_shared<Recorder>();
  auto ann_phone = std::make_shared<Recorder>();
  hub.Subscribe("ann", ann);
  hub.Subscribe("bob", bob);
  hub.Subscribe("ann", ann_phone);
  hub.Publish({EventFor(1, {"ann"}), EventFor(2, {"ann", "bob"}), EventFor(3, {"carl"})});
  EXPECT_EQ(ann->cursors, (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(ann_phone->cursors, (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(bob->cursors, (std::vector<std::int64_t>{2}));
}

TEST(LiveHubTest, UnsubscribedAndDestroyedSubscribersGetNothing) {
  LiveHub hub;
  auto ann = std::make_shared<Recorder>();
  const auto handle = hub.Subscribe("ann", ann);
  {
    auto gone = std::make_shared<Recorder>();
    hub.Subscribe("ann", gone);
  }  // only a weak reference remains in the hub
  hub.Unsubscribe(handle);
  hub.Publish({EventFor(1, {"ann"})});
  EXPECT_TRUE(ann->cursors.empty());
  EXPECT_EQ(hub.size(), 1u);  // the destroyed one, until unsubscribed
}

}  // namespace
}  // namespace cw::messaging
