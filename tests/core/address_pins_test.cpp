// The pin filter (core/address_pins.h): at an address pinned to the key that proved itself there,
// only records naming that key survive; an address whose proof failed keeps none; addresses not
// asked keep theirs. The impostor's record is dropped with a reason naming it, its address and the
// key proved, and the same input always gives the same answer, in input order.
#include <gtest/gtest.h>

#include "core/address_pins.h"

namespace bouquet::core {
namespace {

const PeerId kHonest{0x1111}, kRogue{0x2222}, kOther{0x3333}, kOld{0x4444};

ServerRecord record(PeerId peer, const std::string& address, BlockSpan span) {
  ServerRecord r;
  r.peer = peer;
  r.address = address;
  r.span = span;
  return r;
}

std::vector<PeerId> peers(const std::vector<ServerRecord>& records) {
  std::vector<PeerId> out;
  for (const ServerRecord& r : records) out.push_back(r.peer);
  return out;
}

TEST(AddressPins, KeepsThePinnedKeysRecordsDropsTheImpostorsAndLeavesUnpinnedAddressesAlone) {
  const std::vector<ServerRecord> records{
      record(kRogue, "10.0.0.1:5000", {0, 8}),   // names the honest server's address, a span it lacks
      record(kHonest, "10.0.0.1:5000", {0, 4}),  // the honest server's own record
      record(kOther, "10.0.0.2:5000", {4, 8}),   // an address nobody asked yet
      record(kRogue, "10.0.0.2:5000", {0, 8}),   // unpinned too: left to the challenge at open
      record(kOld, "10.0.0.3:5000", {0, 8}),     // its server answered without a proof
      record(kHonest, "10.0.0.1:5000", {4, 6}),  // a second record of the pinned key
  };
  const AddressPins pins{{"10.0.0.1:5000", AddressPin{kHonest, ""}},
                         {"10.0.0.3:5000", AddressPin{std::nullopt, "it answered without an identity proof"}}};
  const PinnedRecords filtered = keep_pinned_records(records, pins);

  EXPECT_EQ(peers(filtered.kept), (std::vector<PeerId>{kHonest, kOther, kRogue, kHonest}));
  EXPECT_EQ(filtered.kept[0].span, (BlockSpan{0, 4}));
  EXPECT_EQ(filtered.kept[2].address, "10.0.0.2:5000");
  EXPECT_EQ(filtered.kept[3].span, (BlockSpan{4, 6}));

  ASSERT_EQ(filtered.dropped.size(), 2u);
  EXPECT_EQ(filtered.dropped[0].record.peer, kRogue);
  EXPECT_EQ(filtered.dropped[0].reason, "the record of peer " + kRogue.to_string() +
                                            " at 10.0.0.1:5000 (blocks [0, 8)): the server there proved it " +
                                            "holds the key of peer " + kHonest.to_string());
  EXPECT_EQ(filtered.dropped[1].record.peer, kOld);
  EXPECT_EQ(filtered.dropped[1].reason, "the record of peer " + kOld.to_string() +
                                            " at 10.0.0.3:5000 (blocks [0, 8)): the server there did not " +
                                            "prove its identity (it answered without an identity proof)");
}

TEST(AddressPins, WithoutPinsEveryRecordIsKeptAndTheAnswerIsTheSameEveryTime) {
  const std::vector<ServerRecord> records{record(kRogue, "a:1", {0, 2}), record(kHonest, "a:1", {0, 2}),
                                          record(kOther, "b:1", {2, 4}), record(kRogue, "a:1", {})};
  const PinnedRecords unpinned = keep_pinned_records(records, {});
  EXPECT_EQ(peers(unpinned.kept), peers(records));
  EXPECT_TRUE(unpinned.dropped.empty());

  const AddressPins pins{{"a:1", AddressPin{kHonest, ""}}};
  const PinnedRecords first = keep_pinned_records(records, pins);
  for (int i = 0; i < 3; ++i) {
    const PinnedRecords again = keep_pinned_records(records, pins);
    EXPECT_EQ(peers(again.kept), peers(first.kept));
    ASSERT_EQ(again.dropped.size(), first.dropped.size());
    for (size_t i = 0; i < again.dropped.size(); ++i) EXPECT_EQ(again.dropped[i].reason, first.dropped[i].reason);
  }
  EXPECT_EQ(peers(first.kept), (std::vector<PeerId>{kHonest, kOther}));
  // A record known only by its peer and address (no span) is named without blocks.
  ASSERT_EQ(first.dropped.size(), 2u);
  EXPECT_EQ(first.dropped[1].reason, "the record of peer " + kRogue.to_string() +
                                         " at a:1: the server there proved it holds the key of peer " +
                                         kHonest.to_string());
}

}  // namespace
}  // namespace bouquet::core
