// The modelled DHT: a record shows up a few round trips after its announcement, disappears at its
// expiry, and a newer announcement of the same span replaces the older one.
#include "sim/directory.h"

#include <gtest/gtest.h>

namespace bouquet::sim {
namespace {

core::ServerRecord record(uint64_t peer, uint32_t begin, uint32_t end, double expires_at,
                          core::ServerState state = core::ServerState::online) {
  core::ServerRecord r;
  r.peer = core::PeerId{peer};
  r.span = {begin, end};
  r.state = state;
  r.model_id = "m";
  r.expires_at = expires_at;
  return r;
}

TEST(Directory, RecordsAppearAfterTheirRoundTripsAndExpire) {
  Directory directory(DirectoryConfig{.round_trip_s = 0.1, .lookup_round_trips = 3, .announce_round_trips = 2});
  EXPECT_DOUBLE_EQ(directory.announce_delay_s(), 0.2);
  EXPECT_DOUBLE_EQ(directory.lookup_delay_s(), 0.30000000000000004);
  directory.announce(1.0, record(7, 0, 10, 5.0));
  EXPECT_TRUE(directory.lookup(1.1, "m").empty());
  ASSERT_EQ(directory.lookup(1.2, "m").size(), 1u);
  EXPECT_TRUE(directory.lookup(1.2, "other").empty());
  EXPECT_EQ(directory.lookup(4.9, "m").size(), 1u);
  EXPECT_TRUE(directory.lookup(5.0, "m").empty());
}

TEST(Directory, TheNewestAnnouncementOfASpanWins) {
  Directory directory(DirectoryConfig{.round_trip_s = 0.1, .announce_round_trips = 1});
  directory.announce(0, record(7, 0, 10, 100, core::ServerState::joining));
  directory.announce(5, record(7, 0, 10, 100, core::ServerState::online));
  directory.announce(5, record(3, 10, 20, 100));
  auto before = directory.lookup(5.05, "m");
  ASSERT_EQ(before.size(), 1u);  // the joining record; server 3's is not visible yet
  EXPECT_EQ(before[0].state, core::ServerState::joining);
  auto after = directory.lookup(5.1, "m");
  ASSERT_EQ(after.size(), 2u);  // sorted by peer
  EXPECT_EQ(after[0].peer, core::PeerId{3});
  EXPECT_EQ(after[1].state, core::ServerState::online);
}

}  // namespace
}  // namespace bouquet::sim
