#include "core/ban_list.h"

#include <gtest/gtest.h>

namespace bouquet::core {
namespace {

TEST(BanList, BansDoubleWithEachFailureUntilTheServerServesWellAgain) {
  BanList bans;  // 15 s, x2
  const PeerId a{1}, b{2};
  EXPECT_EQ(bans.ban(a, 100), 115.0);
  EXPECT_TRUE(bans.banned(a, 114.9));
  EXPECT_FALSE(bans.banned(a, 115));
  EXPECT_EQ(bans.ban(a, 120), 150.0);
  EXPECT_EQ(bans.ban(a, 150), 210.0);
  EXPECT_EQ(bans.failures(a), 3u);
  bans.forgive(a);
  EXPECT_EQ(bans.ban(a, 300), 315.0);
  EXPECT_EQ(bans.ban(b, 301), 316.0);
  EXPECT_EQ(bans.active(302), (std::vector<PeerId>{a, b}));
  EXPECT_EQ(bans.next_expiry(302), 315.0);
  EXPECT_EQ(bans.active(315.5), (std::vector<PeerId>{b}));
  EXPECT_FALSE(bans.next_expiry(400).has_value());
}

TEST(BanList, AShortBanNeverCutsALongerOneShort) {
  BanList bans(BanListConfig{10, 3});
  const PeerId a{1};
  bans.ban(a, 0);  // until 10
  bans.forgive(a);
  bans.ban(a, 0);  // 10 again
  bans.ban(a, 0);  // until 30
  bans.forgive(a);
  EXPECT_EQ(bans.ban(a, 1), 30.0) << "the running ban stands";
}

}  // namespace
}  // namespace bouquet::core
