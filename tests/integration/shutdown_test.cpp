// Graceful shutdown: SIGTERM and SIGINT drain in-flight requests and exit 0,
// and no request a client sent is dropped.

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <boost/json/parse.hpp>
#include <mutex>
#include <set>
#include <thread>

#include "support/https_client.hpp"
#include "support/server_process.hpp"

namespace cw::testing {
namespace {

using namespace std::chrono_literals;

TEST(ShutdownTest, SigtermAndSigintExitZero) {
  for (int sig : {SIGTERM, SIGINT}) {
    ServerProcess server;
    EXPECT_EQ(Fetch(server.port(), "GET", "/healthz").status, 200);
    EXPECT_EQ(server.Stop(sig, 10s), 0);
    EXPECT_NE(server.Stderr().find("\"event\":\"server.stopped\""), std::string::npos);
  }
}

TEST(ShutdownTest, IdleKeepAliveConnectionsDoNotDelayShutdown) {
  ServerProcess server;
  std::vector<std::unique_ptr<HttpsConnection>> idle;
  for (int i = 0; i < 10; ++i) {
    idle.push_back(std::make_unique<HttpsConnection>(server.port()));
    ASSERT_EQ(idle.back()->Send("GET", "/healthz").status, 200);
  }
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(server.Stop(SIGTERM, 10s), 0);
  // The idle grace is 500 ms by default; the drain timeout (30 s) is not reached.
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

// Clients keep sending durable writes while the server is told to stop. Every
// request written gets a complete answer; after a `Connection: close` answer
// the client reconnects, which fails once the listener is closed. Every
// acknowledged write is in the database afterwards.
TEST(ShutdownTest, NoRequestIsDroppedUnderLoad) {
  TempDir dir;
  const std::string data_dir = (dir.path() / "data").string();
  ServerProcess server(
      {.env = {{"CAREWIRE_DIAGNOSTICS_WRITE_PROBE", "true"}}, .data_dir = data_dir});

  constexpr int kClients = 8;
  std::atomic<int> sent{0}, answered{0}, dropped{0}, refused{0};
  std::atomic<bool> stop_requested{false};
  std::mutex mu;
  std::set<std::string> acked_ids;
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&] {
      // Bounded: each client stops at shutdown or after 20 s.
      const auto give_up = std::chrono::steady_clock::now() + 20s;
      while (std::chrono::steady_clock::now() < give_up) {
        std::unique_ptr<HttpsConnection> c;
        try {
          c = std::make_unique<HttpsConnection>(server.port());
        } catch (const std::exception&) {
          ++refused;  // the listener is closed: not a dropped request
          if (stop_requested) return;
          continue;
        }
        for (;;) {
          HttpResponse r;
          ++sent;
          try {
            r = c->Send("POST", "/api/v1/diagnostics/write-probe", R"({"padding_bytes":64})");
          } catch (const std::exception&) {
            ++dropped;
            break;
          }
          ++answered;
          if (r.status == 201) {
            std::lock_guard lock(mu);
            acked_ids.insert(std::string(boost::json::parse(r.body).at("id").as_string()));
          } else {
            ++dropped;
          }
          if (!r.keep_alive) break;
        }
      }
    });
  }
  // Let load build, then stop the server in the middle of it.
  const auto load_deadline = std::chrono::steady_clock::now() + 20s;
  while (answered < 300 && std::chrono::steady_clock::now() < load_deadline) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_GE(answered.load(), 300) << "the load never built up";
  stop_requested = true;
  EXPECT_EQ(server.Stop(SIGTERM, 30s), 0);
  for (auto& t : clients) t.join();

  EXPECT_EQ(dropped.load(), 0);
  EXPECT_EQ(sent.load(), answered.load());
  EXPECT_GT(refused.load(), 0);

  // Every acknowledged write survived (the probe keeps its newest 1,000 rows).
  sqlite3* db = nullptr;
  ASSERT_EQ(
      sqlite3_open_v2((data_dir + "/carewire.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
      SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT id FROM write_probes", -1, &st, nullptr), SQLITE_OK);
  std::set<std::string> stored;
  while (sqlite3_step(st) == SQLITE_ROW) stored.insert(std::to_string(sqlite3_column_int64(st, 0)));
  sqlite3_finalize(st);
  sqlite3_close(db);
  const std::int64_t newest =
      stored.empty()
          ? 0
          : std::stoll(*std::max_element(stored.begin(), stored.end(), [](auto& a, auto& b) {
              return std::stoll(a) < std::stoll(b);
            }));
  int missing = 0;
  for (const auto& id : acked_ids) {
    if (std::stoll(id) > newest - 1000 && stored.count(id) == 0) ++missing;
  }
  EXPECT_EQ(missing, 0);
  EXPECT_GE(static_cast<int>(acked_ids.size()), 300);
}

}  // namespace
}  // namespace cw::testing
