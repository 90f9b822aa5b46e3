#include "core/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace cw::metrics {
namespace {

constexpr double kLatencyBuckets[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                      0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                      0.5,     1,      2.5,     5,      10};

void AppendEscapedLabel(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
}

// Renders {a="x",b="y"}, or "" when there are no labels.
std::string RenderLabels(const Labels& labels) {
  if (labels.empty()) return {};
  std::string out = "{";
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (i) out.push_back(',');
    out += labels[i].name.view();
    out += "=\"";
    AppendEscapedLabel(out, labels[i].value.text());
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

std::string FormatNumber(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

// Inserts `extra` (such as le="0.5") into a rendered label set.
std::string WithLabel(const std::string& rendered, const std::string& extra) {
  if (rendered.empty()) return "{" + extra + "}";
  return rendered.substr(0, rendered.size() - 1) + "," + extra + "}";
}

}  // namespace

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds.begin(), bounds.end()),
      buckets_(new std::atomic<std::uint64_t>[bounds.size() + 1]) {
  if (!std::is_sorted(bounds_.begin(), bounds_.end())) {
    throw std::logic_error("histogram bounds must be sorted");
  }
  for (std::size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double value) {
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), value);
  buckets_[static_cast<std::size_t>(it - bounds_.begin())].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  double sum = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(sum, sum + value, std::memory_order_relaxed)) {
  }
}

Histogram::Snapshot Histogram::Take() const {
  Snapshot s;
  s.bounds = bounds_;
  std::uint64_t running = 0;
  for (std::size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::span<const double> LatencyBuckets() { return kLatencyBuckets; }

Registry::Family& Registry::FamilyLocked(SafeText name, SafeText help, const char* type) {
  auto it = families_.find(name.view());
  if (it == families_.end()) {
    it = families_.emplace(std::string(name.view()), Family{}).first;
    it->second.help = std::string(help.view());
    it->second.type = type;
  } else if (it->second.type != type) {
    throw std::logic_error("metric registered twice with different types");
  }
  return it->second;
}

Counter& Registry::GetCounter(SafeText name, SafeText help, const Labels& labels) {
  const std::string key = RenderLabels(labels);
  {
    std::shared_lock lock(mutex_);
    auto fam = families_.find(name.view());
    if (fam != families_.end()) {
      auto it = fam->second.counters.find(key);
      if (it != fam->second.counters.end()) return *it->second;
    }
  }
  std::unique_lock lock(mutex_);
  auto& slot = FamilyLocked(name, help, "counter").counters[key];
  if (!slot) slot = std::make_unique<Counter>();
  return *slot;
}

Histogram& Registry::GetHistogram(SafeText name, SafeText help, std::span<const double> bounds,
                                  const Labels& labels) {
  const std::string key = RenderLabels(labels);
  {
    std::shared_lock lock(mutex_);
    auto fam = families_.find(name.view());
    if (fam != families_.end()) {
      auto it = fam->second.histograms.find(key);
      if (it != fam->second.histograms.end()) return *it->second;
    }
  }
  std::unique_lock lock(mutex_);
  auto& slot = FamilyLocked(name, help, "histogram").histograms[key];
  if (!slot) slot = std::make_unique<Histogram>(bounds);
  return *slot;
}

void Registry::AddGauge(SafeText name, SafeText help, std::function<double()> read) {
  std::unique_lock lock(mutex_);
  FamilyLocked(name, help, "gauge").gauge = std::move(read);
}

std::string Registry::RenderPrometheus() const {
  std::shared_lock lock(mutex_);
  std::string out;
  for (const auto& [name, fam] : families_) {
    out += "# HELP " + name + " " + fam.help + "\n";
    out += "# TYPE " + name + " " + fam.type + "\n";
    for (const auto& [labels, counter] : fam.counters) {
      out += name + labels + " " + std::to_string(counter->Value()) + "\n";
    }
    for (const auto& [labels, hist] : fam.histograms) {
      const auto snap = hist->Take();
      for (std::size_t i = 0; i < snap.cumulative.size(); ++i) {
        const double bound = i < snap.bounds.size() ? snap.bounds[i] : INFINITY;
        out += name + "_bucket" + WithLabel(labels, "le=\"" + FormatNumber(bound) + "\"") + " " +
               std::to_string(snap.cumulative[i]) + "\n";
      }
      out += name + "_sum" + labels + " " + FormatNumber(snap.sum) + "\n";
      out += name + "_count" + labels + " " + std::to_string(snap.count) + "\n";
    }
    if (fam.gauge) out += name + " " + FormatNumber(fam.gauge()) + "\n";
  }
  return out;
}

}  // namespace cw::metrics
