#include "core/metrics.hpp"

#include <gtest/gtest.h>

#include <thread>

namespace cw::metrics {
namespace {

TEST(MetricsTest, CountersAreSharedBySeriesAndRendered) {
  Registry r;
  r.GetCounter("requests_total", "Requests", {{"route", SafeText("/a")}, {"status", 200}}).Add();
  r.GetCounter("requests_total", "Requests", {{"route", SafeText("/a")}, {"status", 200}}).Add(2);
  r.GetCounter("requests_total", "Requests", {{"route", SafeText("/b")}, {"status", 404}}).Add();
  const std::string text = r.RenderPrometheus();
  EXPECT_NE(text.find("# TYPE requests_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("requests_total{route=\"/a\",status=\"200\"} 3\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("requests_total{route=\"/b\",status=\"404\"} 1\n"), std::string::npos);
}

TEST(MetricsTest, HistogramIsCumulative) {
  Registry r;
  const double bounds[] = {1, 2, 4};
  auto& h = r.GetHistogram("batch", "Batch sizes", bounds);
  for (double v : {0.5, 1.0, 1.5, 3.0, 100.0}) h.Observe(v);
  const auto s = h.Take();
  EXPECT_EQ(s.cumulative, (std::vector<std::uint64_t>{2, 3, 4, 5}));
  EXPECT_EQ(s.count, 5u);
  EXPECT_DOUBLE_EQ(s.sum, 106.0);
  const std::string text = r.RenderPrometheus();
  EXPECT_NE(text.find("batch_bucket{le=\"1\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("batch_bucket{le=\"+Inf\"} 5\n"), std::string::npos);
  EXPECT_NE(text.find("batch_count 5\n"), std::string::npos);
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  Registry r;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        r.GetCounter("c", "c", {{"k", i % 3}}).Add();
        r.GetHistogram("h", "h", LatencyBuckets()).Observe(0.001);
      }
    });
  }
  for (auto& t : threads) t.join();
  std::uint64_t total = 0;
  for (int k = 0; k < 3; ++k) total += r.GetCounter("c", "c", {{"k", k}}).Value();
  EXPECT_EQ(total, 40000u);
  EXPECT_EQ(r.GetHistogram("h", "h", LatencyBuckets()).Take().count, 40000u);
}

TEST(MetricsTest, GaugeIsReadAtRenderTime) {
  Registry r;
  int open = 3;
  r.AddGauge("open", "Open things", [&] { return open; });
  open = 7;
  EXPECT_NE(r.RenderPrometheus().find("open 7\n"), std::string::npos);
}

TEST(MetricsTest, OneNameCannotHaveTwoTypes) {
  Registry r;
  r.GetCounter("x", "x");
  EXPECT_THROW(r.GetHistogram("x", "x", LatencyBuckets()), std::logic_error);
}

}  // namespace
}  // namespace cw::metrics
