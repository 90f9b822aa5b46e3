// carewire-loadgen: a closed-loop HTTPS load generator for a local Carewire.
//
// Each of --connections keep-alive TLS connections sends one request, waits
// for the whole response, and only then sends the next. The offered load
// therefore follows the server: requests/s is what the server sustained at
// that concurrency. Being closed-loop, it under-reports tail latency when the
// server stalls (a stalled connection sends nothing while it waits), so read
// p99.9 and max as lower bounds.
//
// Timeline: connections open and send during --warmup, which is not counted;
// a request counts when it starts at or after the end of the warm-up and its
// response has arrived by the end of --duration. Requests still in flight at
// the end get a short grace period to finish (uncounted) so connections close
// cleanly; nothing outlives the grace period.
//
// Only loopback targets are accepted: the generator skips certificate
// verification (the development server is self-signed) and is built to
// overload whatever it points at.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "net_load.hpp"

namespace cw::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);

// How long a request in flight when the measured window closes may take to
// finish before its connection is cut. Such requests are never counted.
constexpr auto kGrace = std::chrono::seconds(2);
// Bound on the TLS close_notify exchange when a connection ends.
constexpr auto kShutdownTimeout = std::chrono::seconds(1);
// Pause before reconnecting after an I/O error, so a server that refuses
// connections is not hammered in a tight loop.
constexpr auto kReconnectPause = std::chrono::milliseconds(10);
// The responses measured here are small JSON documents; a larger body means
// the wrong endpoint, and the limit keeps memory bounded.
constexpr std::uint64_t kMaxResponseBody = 1 << 20;
// Latency samples kept across all threads (4 bytes each): 256 MiB. Beyond
// this, requests are still counted but percentiles use the first samples
// only, and the report says so.
constexpr std::size_t kMaxSamples = std::size_t{64} << 20;

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string method = "GET";
  std::string path = "/healthz";
  std::string body;
  std::string content_type;
  int connections = 64;
  int threads = 1;
  double duration_s = 10;
  double warmup_s = 1;
  double timeout_s = 5;
  bool json = false;
};

struct Schedule {
  Clock::time_point measure_from;   // end of the warm-up
  Clock::time_point measure_until;  // end of the measured window
  Clock::time_point hard_stop;      // no I/O is allowed past this point
  Clock::duration timeout;          // per request
};

// What the connections of one io thread measured. Written only by
// coroutines on that thread's io_context; read after the thread has joined.
struct Tally {
  std::vector<std::uint32_t> latencies_us;  // counted requests, in microseconds
  std::size_t max_samples = 0;
  bool samples_truncated = false;
  std::uint64_t requests = 0;   // counted requests, whatever their status
  std::uint64_t non_2xx = 0;    // counted requests whose status was not 2xx
  std::uint64_t io_errors = 0;  // failed connects, handshakes, reads, writes, timeouts
  std::uint64_t connects = 0;   // TLS connections established
  std::string first_error;      // the first I/O error, for the operator
};

void NoteIoError(Tally& tally, const char* stage, const boost::system::error_code& ec) {
  ++tally.io_errors;
  if (tally.first_error.empty()) tally.first_error = std::string(stage) + ": " + ec.message();
}

http::request<http::string_body> BuildRequest(const Options& options) {
  http::request<http::string_body> request;
  request.method(options.method == "POST" ? http::verb::post : http::verb::get);
  request.target(options.path);
  request.version(11);
  request.set(http::field::host, options.host + ":" + std::to_string(options.port));
  request.set(http::field::user_agent, "carewire-loadgen");
  request.keep_alive(true);
  if (!options.content_type.empty()) request.set(http::field::content_type, options.content_type);
  if (options.method == "POST" || !options.body.empty()) {
    request.body() = options.body;
    request.prepare_payload();
  }
  return request;
}

// Opens the TCP connection and runs the TLS handshake, bounded by the
// per-request timeout. Counts the connection or the error.
asio::awaitable<bool> Connect(TlsStream& stream, const Schedule& schedule,
                              const std::vector<tcp::endpoint>& endpoints, Tally& tally) {
  beast::tcp_stream& lowest = beast::get_lowest_layer(stream);
  lowest.expires_at(std::min(Clock::now() + schedule.timeout, schedule.hard_stop));
  if (auto [ec, endpoint] = co_await lowest.async_connect(endpoints, kUseTuple); ec) {
    NoteIoError(tally, "connect", ec);
    co_return false;
  }
  // Requests are small and sent whole; without this Nagle's algorithm can
  // hold a request back waiting for the previous response's ACK.
  boost::system::error_code ec;
  lowest.socket().set_option(tcp::no_delay(true), ec);
  if (ec) {
    NoteIoError(tally, "connect", ec);
    co_return false;
  }
  if (auto [hec] = co_await stream.async_handshake(ssl::stream_base::client, kUseTuple); hec) {
    NoteIoError(tally, "handshake", hec);
    co_return false;
  }
  ++tally.connects;
  co_return true;
}

// One connection's closed loop: connect, send requests one after another
// until the window closes, reconnect after an error or a `Connection: close`.
asio::awaitable<void> RunConnection(const Options& options, const Schedule& schedule,
                                    const std::vector<tcp::endpoint>& endpoints, ssl::context& tls,
                                    Tally& tally) {
  auto executor = co_await asio::this_coro::executor;
  http::request<http::string_body> request = BuildRequest(options);
  asio::steady_timer pause(executor);

  while (Clock::now() < schedule.measure_until) {
    TlsStream stream(executor, tls);
    beast::tcp_stream& lowest = beast::get_lowest_layer(stream);

    const bool connected = co_await Connect(stream, schedule, endpoints, tally);

    bool failed = !connected;
    bool reusable = connected;
    beast::flat_buffer buffer;
    while (reusable) {
      const auto start = Clock::now();
      if (start >= schedule.measure_until) break;
      lowest.expires_at(std::min(start + schedule.timeout, schedule.hard_stop));

      if (auto [ec, n] = co_await http::async_write(stream, request, kUseTuple); ec) {
        NoteIoError(tally, "write", ec);
        failed = true;
        reusable = false;
        break;
      }
      http::response_parser<http::string_body> parser;
      parser.body_limit(kMaxResponseBody);
      if (auto [ec, n] = co_await http::async_read(stream, buffer, parser, kUseTuple); ec) {
        NoteIoError(tally, "read", ec);
        failed = true;
        reusable = false;
        break;
      }
      const auto end = Clock::now();

      if (start >= schedule.measure_from && end <= schedule.measure_until) {
        ++tally.requests;
        const unsigned status = parser.get().result_int();
        if (status < 200 || status > 299) ++tally.non_2xx;
        if (tally.latencies_us.size() < tally.max_samples) {
          const auto us =
              std::chrono::duration_cast<std::chrono::microseconds>(end - start).count();
          tally.latencies_us.push_back(static_cast<std::uint32_t>(
              std::min<std::int64_t>(us, std::numeric_limits<std::uint32_t>::max())));
        } else {
          tally.samples_truncated = true;
        }
      }
      if (!parser.keep_alive()) reusable = false;
    }

    if (reusable) {
      // Send close_notify so the server sees an orderly close; errors here
      // (a server that just closes the socket) are not the server's fault.
      lowest.expires_after(kShutdownTimeout);
      co_await stream.async_shutdown(kUseTuple);
    }
    boost::system::error_code ignored;
    lowest.socket().close(ignored);

    if (failed && Clock::now() < schedule.measure_until) {
      pause.expires_after(kReconnectPause);
      co_await pause.async_wait(kUseTuple);
    }
  }
}

// Runs this thread's share of the connections to completion. A watchdog stops
// the io_context should anything outlive the hard stop, so the program always
// ends; with every I/O bounded by the stream deadlines it should never fire.
void RunThread(const Options& options, const Schedule& schedule,
               const std::vector<tcp::endpoint>& endpoints, ssl::context& tls, int connections,
               Tally& tally) {
  asio::io_context ioc(1);
  asio::steady_timer watchdog(ioc, schedule.hard_stop + kShutdownTimeout + std::chrono::seconds(1));
  watchdog.async_wait([&ioc](boost::system::error_code ec) {
    if (!ec) ioc.stop();
  });
  int live = connections;
  for (int i = 0; i < connections; ++i) {
    asio::co_spawn(ioc, RunConnection(options, schedule, endpoints, tls, tally),
                   [&](const std::exception_ptr& error) {
                     if (error) {
                       ++tally.io_errors;
                       try {
                         std::rethrow_exception(error);
                       } catch (const std::exception& e) {
                         if (tally.first_error.empty()) tally.first_error = e.what();
                       }
                     }
                     if (--live == 0) watchdog.cancel();
                   });
  }
  ioc.run();
}

struct Report {
  std::uint64_t requests = 0;
  std::uint64_t non_2xx = 0;
  std::uint64_t io_errors = 0;
  std::uint64_t connects = 0;
  bool samples_truncated = false;
  double requests_per_s = 0;
  std::uint32_t p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0;
  std::string first_error;
};

Report Summarize(const Options& options, std::vector<Tally>& tallies) {
  Report report;
  std::vector<std::uint32_t> all;
  for (Tally& t : tallies) {
    report.requests += t.requests;
    report.non_2xx += t.non_2xx;
    report.io_errors += t.io_errors;
    report.connects += t.connects;
    report.samples_truncated = report.samples_truncated || t.samples_truncated;
    if (report.first_error.empty()) report.first_error = t.first_error;
    all.insert(all.end(), t.latencies_us.begin(), t.latencies_us.end());
    t.latencies_us = {};
  }
  std::sort(all.begin(), all.end());
  report.requests_per_s = static_cast<double>(report.requests) / options.duration_s;
  report.p50 = Percentile(all, 50);
  report.p90 = Percentile(all, 90);
  report.p99 = Percentile(all, 99);
  report.p999 = Percentile(all, 99.9);
  report.max = all.empty() ? 0 : all.back();
  return report;
}

void PrintText(const Options& options, const Report& r) {
  std::printf("%s https://%s:%u%s\n", options.method.c_str(), options.host.c_str(),
              static_cast<unsigned>(options.port), options.path.c_str());
  std::printf("  connections    %d (io threads %d), warm-up %.1f s, measured %.1f s\n",
              options.connections, options.threads, options.warmup_s, options.duration_s);
  std::printf("  requests       %llu\n", static_cast<unsigned long long>(r.requests));
  std::printf("  requests/s     %.1f\n", r.requests_per_s);
  std::printf("  non-2xx        %llu\n", static_cast<unsigned long long>(r.non_2xx));
  std::printf("  io errors      %llu\n", static_cast<unsigned long long>(r.io_errors));
  std::printf("  latency (us)   %8s %8s %8s %8s %8s\n", "p50", "p90", "p99", "p99.9", "max");
  std::printf("                 %8u %8u %8u %8u %8u\n", r.p50, r.p90, r.p99, r.p999, r.max);
  if (r.samples_truncated)
    std::printf("  note: percentiles use the first %zu samples only\n", kMaxSamples);
  if (!r.first_error.empty()) std::printf("  first io error: %s\n", r.first_error.c_str());
}

// Quotes and escapes a string for JSON.
std::string JsonString(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", u);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

void PrintJson(const Options& options, const Report& r) {
  std::printf(
      "{\"method\":%s,\"host\":%s,\"port\":%u,\"path\":%s,\"connections\":%d,\"threads\":%d,"
      "\"warmup_s\":%.3f,\"duration_s\":%.3f,\"requests\":%llu,\"requests_per_s\":%.1f,"
      "\"non_2xx\":%llu,\"io_errors\":%llu,\"connects\":%llu,"
      "\"latency_us\":{\"p50\":%u,\"p90\":%u,\"p99\":%u,\"p99_9\":%u,\"max\":%u},"
      "\"samples_truncated\":%s,\"first_io_error\":%s}\n",
      JsonString(options.method).c_str(), JsonString(options.host).c_str(),
      static_cast<unsigned>(options.port), JsonString(options.path).c_str(), options.connections,
      options.threads, options.warmup_s, options.duration_s,
      static_cast<unsigned long long>(r.requests), r.requests_per_s,
      static_cast<unsigned long long>(r.non_2xx), static_cast<unsigned long long>(r.io_errors),
      static_cast<unsigned long long>(r.connects), r.p50, r.p90, r.p99, r.p999, r.max,
      r.samples_truncated ? "true" : "false",
      r.first_error.empty() ? "null" : JsonString(r.first_error).c_str());
}

// Resolves the target and keeps only loopback addresses (see the file comment).
int Main(int argc, char** argv) {
  Options options;
  CLI::App app{"Closed-loop HTTPS load generator for a local Carewire server."};
  app.add_option("--host", options.host, "Server address (loopback only)")->capture_default_str();
  app.add_option("--port", options.port, "Server port")->required()->check(CLI::Range(1, 65535));
  app.add_option("--method", options.method, "HTTP method")
      ->check(CLI::IsMember({"GET", "POST"}))
      ->capture_default_str();
  app.add_option("--path", options.path, "Request target")->capture_default_str();
  app.add_option("--body", options.body, "Request body");
  app.add_option("--content-type", options.content_type, "Content-Type header");
  app.add_option("--connections", options.connections, "Concurrent keep-alive connections")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  app.add_option("--threads", options.threads, "I/O threads")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--duration", options.duration_s, "Measured seconds")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  app.add_option("--warmup", options.warmup_s, "Uncounted seconds before measuring")
      ->check(CLI::Range(0.0, 600.0))
      ->capture_default_str();
  app.add_option("--timeout", options.timeout_s, "Seconds before a request counts as an io error")
      ->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();
  app.add_flag("--json", options.json, "Print one JSON line instead of text");
  CLI11_PARSE(app, argc, argv);
  if (!options.path.starts_with('/')) {
    std::fprintf(stderr, "carewire-loadgen: --path must start with '/'\n");
    return 2;
  }
  options.threads = std::min(options.threads, options.connections);

  const std::vector<tcp::endpoint> endpoints =
      ResolveLoopback("carewire-loadgen", options.host, options.port);
  if (endpoints.empty()) return 2;

  ssl::context tls(ssl::context::tls_client);
  tls.set_verify_mode(ssl::verify_none);

  const auto to_clock = [](double seconds) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  };
  Schedule schedule;
  const auto start = Clock::now();
  schedule.measure_from = start + to_clock(options.warmup_s);
  schedule.measure_until = schedule.measure_from + to_clock(options.duration_s);
  schedule.hard_stop = schedule.measure_until + kGrace;
  schedule.timeout = to_clock(options.timeout_s);

  std::vector<Tally> tallies(static_cast<std::size_t>(options.threads));
  std::vector<std::thread> threads;
  for (int i = 0; i < options.threads; ++i) {
    // Connections are spread evenly; the first threads take the remainder.
    const int share =
        options.connections / options.threads + (i < options.connections % options.threads ? 1 : 0);
    Tally& tally = tallies[static_cast<std::size_t>(i)];
    tally.max_samples = kMaxSamples / static_cast<std::size_t>(options.threads);
    threads.emplace_back(
        [&, share] { RunThread(options, schedule, endpoints, tls, share, tally); });
  }
  for (auto& t : threads) t.join();

  const Report report = Summarize(options, tallies);
  if (options.json) {
    PrintJson(options, report);
  } else {
    PrintText(options, report);
  }
  return report.requests > 0 ? 0 : 1;
}

}  // namespace
}  // namespace cw::bench

int main(int argc, char** argv) { return cw::bench::Main(argc, argv); }
