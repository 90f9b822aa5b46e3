#pragma once

// A deployment as an operator makes one: a data directory in a temporary
// directory of its own, organizations added with `carewire init` (the first)
// and `carewire org create` (the others), and the real server on it.

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "support/server_process.hpp"

namespace cw::testing {

class Deployment {
 public:
  // `env` is added to the server's environment each time it starts.
  explicit Deployment(std::map<std::string, std::string> env = {});
  Deployment(const Deployment&) = delete;
  Deployment& operator=(const Deployment&) = delete;

  // `carewire init` for the first organization, `carewire org create` for
  // the others (also while the server runs, as an operator would). Returns
  // the owner's one-time password, or "" after a test failure (ADD_FAILURE).
  std::string AddOrg(const std::string& slug, const std::string& owner);

  // Starts a server on the data directory. Once one has been stopped (with
  // server().Stop), Start runs the next one on the same data, as a restart.
  void Start();
  bool started() const { return server_ != nullptr; }

  // How a test ends that wants its whole trail checked: the server stops
  // cleanly (SIGTERM, exit status 0), then `carewire audit verify` finds the
  // chain and checkpoints intact. Fails the test (EXPECT) otherwise.
  void StopAndVerifyAudit();

  // The current server; only after Start.
  std::uint16_t port() const { return server_->port(); }
  ServerProcess& server() { return *server_; }

  const std::filesystem::path& data() const { return data_; }
  std::filesystem::path database() const { return data_ / "carewire.db"; }

 private:
  TempDir dir_;
  std::filesystem::path data_;
  std::map<std::string, std::string> env_;
  bool first_ = true;
  std::unique_ptr<ServerProcess> server_;  // killed with the deployment if it still runs
};

}  // namespace cw::testing
