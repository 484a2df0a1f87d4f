#include "core/cache_admission.h"

#include <gtest/gtest.h>

#include "core/task_queue.h"

namespace bouquet::core {
namespace {

TEST(CacheAdmission, GrantsWhatFitsQueuesTheRestInOrderAndRefusesTheImpossible) {
  CacheAdmission a(100);
  EXPECT_EQ(a.request(1, 60), CacheAdmission::Outcome::granted);
  EXPECT_EQ(a.request(2, 101), CacheAdmission::Outcome::never_fits);
  EXPECT_EQ(a.request(3, 50), CacheAdmission::Outcome::waiting);
  EXPECT_EQ(a.request(4, 10), CacheAdmission::Outcome::waiting);  // fits, but 3 is first
  EXPECT_EQ(a.tokens_free(), 40u);
  a.release(60);
  EXPECT_EQ(a.take_granted(), (std::vector<CacheAdmission::Ticket>{3, 4}));
  EXPECT_EQ(a.tokens_free(), 40u);
  EXPECT_TRUE(a.take_granted().empty());
}

TEST(CacheAdmission, CancellingTheHeadLetsTheOthersIn) {
  CacheAdmission a(100);
  a.request(1, 90);
  a.request(2, 50);
  a.request(3, 10);
  EXPECT_TRUE(a.cancel(2));
  EXPECT_FALSE(a.cancel(2));
  EXPECT_EQ(a.take_granted(), (std::vector<CacheAdmission::Ticket>{3}));
  EXPECT_EQ(a.tokens_used(), 100u);
  EXPECT_EQ(a.waiting(), 0u);
}

TEST(CacheAdmission, CancellingAGrantedButUncollectedTicketGivesItsTokensBack) {
  CacheAdmission a(100);
  a.request(1, 90);
  a.request(2, 50);
  a.request(3, 10);
  EXPECT_TRUE(a.cancel(2));  // grants 3
  EXPECT_TRUE(a.cancel(3));  // before anyone collected it
  EXPECT_FALSE(a.cancel(3));
  EXPECT_TRUE(a.take_granted().empty());
  EXPECT_EQ(a.tokens_used(), 90u);
  a.release(90);
  EXPECT_EQ(a.tokens_free(), 100u);
}

TEST(CacheAdmission, ManyWaitersCostLittleEach) {
  // 200,000 queued requests withdrawn from the back: quadratic bookkeeping would take minutes.
  CacheAdmission a(100);
  a.request(1, 100);
  const CacheAdmission::Ticket n = 200000;
  for (CacheAdmission::Ticket t = 2; t <= n; ++t) a.request(t, 1 + t % 100);
  for (CacheAdmission::Ticket t = n; t >= 2; --t) EXPECT_TRUE(a.cancel(t));
  EXPECT_EQ(a.waiting(), 0u);
}

ComputeRequest task(TaskId id, ComputeKind kind) {
  ComputeRequest r;
  r.task_id = id;
  r.kind = kind;
  return r;
}

TEST(TaskQueue, InferenceFirstThenArrivalOrder) {
  TaskQueue q;
  q.push(task(1, ComputeKind::forward));
  q.push(task(2, ComputeKind::backward));
  q.push(task(3, ComputeKind::inference));
  q.push(task(4, ComputeKind::forward));
  q.push(task(5, ComputeKind::inference));
  EXPECT_TRUE(q.remove(4));
  EXPECT_FALSE(q.remove(4));
  std::vector<TaskId> order;
  while (auto t = q.pop()) order.push_back(t->task_id);
  EXPECT_EQ(order, (std::vector<TaskId>{3, 5, 1, 2}));
  EXPECT_TRUE(q.empty());
}

}  // namespace
}  // namespace bouquet::core
