#pragma once

// In-process metrics rendered in the Prometheus text format.
//
// Names, label names and label values are SafeText or integers, so no label
// can carry PHI. Series are created on first use and live as long as the
// registry; callers keep the returned reference and update it lock-free.
// Thread-safe.

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/safe_text.hpp"

namespace cw::metrics {

class Counter {
 public:
  void Add(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// A cumulative histogram with fixed upper bounds.
class Histogram {
 public:
  explicit Histogram(std::span<const double> bounds);

  void Observe(double value);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<std::uint64_t> cumulative;  // one per bound, then +Inf
    std::uint64_t count = 0;
    double sum = 0;
  };
  Snapshot Take() const;

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;  // bounds_.size() + 1
  std::atomic<std::uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// A label value: fixed text or a number (an HTTP status, say).
class LabelValue {
 public:
  LabelValue(SafeText text) : text_(text.view()) {}          // NOLINT: implicit on purpose
  LabelValue(int number) : text_(std::to_string(number)) {}  // NOLINT
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

struct Label {
  SafeText name;
  LabelValue value;
};

using Labels = std::vector<Label>;

// Latency buckets in seconds, from 50 us to 10 s.
std::span<const double> LatencyBuckets();

class Registry {
 public:
  Counter& GetCounter(SafeText name, SafeText help, const Labels& labels = {});
  Histogram& GetHistogram(SafeText name, SafeText help, std::span<const double> bounds,
                          const Labels& labels = {});
  // A gauge read when the metrics are rendered.
  void AddGauge(SafeText name, SafeText help, std::function<double()> read);

  std::string RenderPrometheus() const;

 private:
  struct Family {
    std::string help;
    std::string type;
    std::map<std::string, std::unique_ptr<Counter>> counters;      // by rendered labels
    std::map<std::string, std::unique_ptr<Histogram>> histograms;  // by rendered labels
    std::function<double()> gauge;
  };

  Family& FamilyLocked(SafeText name, SafeText help, const char* type);

  mutable std::shared_mutex mutex_;
  std::map<std::string, Family, std::less<>> families_;
};

}  // namespace cw::metrics
