#pragma once

// What the two HTTPS load generators (carewire-loadgen and
// carewire-messaging-load) share: the loopback-only target and the
// percentile of their latency samples.

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace cw::bench {

// Nearest-rank percentile of sorted samples; 0 when there are none.
inline std::uint32_t Percentile(const std::vector<std::uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto rank =
      static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<std::size_t>(rank, 1, sorted.size()) - 1];
}

// The loopback addresses `host` resolves to. A load generator only ever loads
// the machine it runs on: anything else is refused (empty, with the reason
// printed under `program`'s name).
inline std::vector<boost::asio::ip::tcp::endpoint> ResolveLoopback(const char* program,
                                                                   const std::string& host,
                                                                   std::uint16_t port) {
  boost::asio::io_context ioc;
  boost::asio::ip::tcp::resolver resolver(ioc);
  boost::system::error_code ec;
  const auto results = resolver.resolve(host, std::to_string(port), ec);
  std::vector<boost::asio::ip::tcp::endpoint> endpoints;
  if (ec) {
    std::fprintf(stderr, "%s: cannot resolve %s: %s\n", program, host.c_str(),
                 ec.message().c_str());
    return endpoints;
  }
  for (const auto& entry : results) {
    if (entry.endpoint().address().is_loopback()) endpoints.push_back(entry.endpoint());
  }
  if (endpoints.empty()) {
    std::fprintf(stderr, "%s: %s is not a loopback address; refusing\n", program, host.c_str());
  }
  return endpoints;
}

}  // namespace cw::bench
