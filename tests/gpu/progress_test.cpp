// Progress as a user sees it: a bar with counts, sizes, rates and time left on a terminal, redrawn
// in place; plain lines, one per tenth of the work, in a log.
#include "gpu/progress.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

namespace bouquet::gpu {
namespace {

using ::testing::HasSubstr;

// What `fn` wrote to a temporary FILE.
template <class Fn>
std::string written(Fn fn) {
  std::FILE* f = std::tmpfile();
  fn(f);
  std::fflush(f);
  std::rewind(f);
  std::string out;
  for (int c; (c = std::fgetc(f)) != EOF;) out += static_cast<char>(c);
  std::fclose(f);
  return out;
}

TEST(Progress, TheLineShowsCountsBytesRatesAndTimeLeft) {
  const Progress p(ProgressConfig{"loading blocks [0, 10)", 10, "blocks", stderr, 0});
  const std::string line = p.line(4, 200'000'000, "", 2.0);
  EXPECT_THAT(line, HasSubstr("loading blocks [0, 10) [#########...............] 4/10 blocks"));
  EXPECT_THAT(line, HasSubstr("200.0 MB, 100.0 MB/s, 2s elapsed, ~3s left"));
  const std::string steps = p.line(10, 0, "loss 1.2345", 4.0);
  EXPECT_THAT(steps, HasSubstr("10/10 blocks, 2.50 blocks/s, 4s elapsed, loss 1.2345"));
  EXPECT_THAT(steps, ::testing::Not(HasSubstr("left")));
  EXPECT_EQ(duration_text(190), "3m10s");
  EXPECT_EQ(duration_text(7500), "2h05m");
}

TEST(Progress, ALogGetsOneLinePerTenthAndTheEnd) {
  const std::string log = written([](std::FILE* f) {
    Progress p(ProgressConfig{"finetune", 100, "steps", f, 0});
    for (int64_t step = 1; step <= 100; ++step) p.update(step, 0, "loss 1.0");
  });
  size_t lines = 0;
  for (char c : log) lines += c == '\n';
  EXPECT_EQ(lines, 11u) << log;  // steps 1, 10, 20, ..., 100
  EXPECT_EQ(log.find('\r'), std::string::npos) << "no terminal codes in a log";
  EXPECT_THAT(log, HasSubstr("finetune [########################] 100/100 steps"));
}

TEST(Progress, ATerminalGetsOneLineRedrawnInPlace) {
  const std::string tty = written([](std::FILE* f) {
    Progress p(ProgressConfig{"loading blocks [0, 3)", 3, "blocks", f, 1});
    for (int64_t b = 1; b <= 3; ++b) p.update(b, uint64_t(b) * 1000);
  });
  EXPECT_EQ(tty.rfind("\r\x1b[K", 0), 0u) << "starts by clearing the line";
  EXPECT_THAT(tty, HasSubstr("3/3 blocks"));
  EXPECT_EQ(tty.back(), '\n') << "ends the line when done";
  size_t newlines = 0;
  for (char c : tty) newlines += c == '\n';
  EXPECT_EQ(newlines, 1u);
}

}  // namespace
}  // namespace bouquet::gpu
