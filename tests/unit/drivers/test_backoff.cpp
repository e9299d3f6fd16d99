#include <doctest/doctest.h>

#include <semilab/drivers/backoff.hpp>

using semilab::drivers::reconnect_backoff;
using namespace std::chrono_literals;

TEST_CASE("backoff: doubles from 100 ms to 30 s with jitter in [d/2, d], reset starts over") {
  reconnect_backoff b(42);
  std::chrono::milliseconds step = 100ms;
  for (int i = 0; i < 20; ++i) {
    auto d = b.next();
    CAPTURE(i);
    CHECK(d >= step / 2);
    CHECK(d <= step);
    step = std::min(step * 2, std::chrono::milliseconds(30000));
  }
  CHECK(b.failures() == 20);
  // At the cap the delay stays within [15 s, 30 s].
  auto capped = b.next();
  CHECK(capped >= 15000ms);
  CHECK(capped <= 30000ms);
  b.reset();
  CHECK(b.failures() == 0);
  CHECK(b.next() <= 100ms);
  // Jitter: two seeds disagree somewhere in the first steps.
  reconnect_backoff x(1), y(2);
  bool differ = false;
  for (int i = 0; i < 8; ++i) differ = differ || x.next() != y.next();
  CHECK(differ);
}
