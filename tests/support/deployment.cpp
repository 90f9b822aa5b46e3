#include "support/deployment.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <regex>
#include <vector>

#include "support/api.hpp"

namespace cw::testing {

Deployment::Deployment(std::map<std::string, std::string> env)
    : data_(dir_.path() / "data"), env_(std::move(env)) {}

std::string Deployment::AddOrg(const std::string& slug, const std::string& owner) {
  std::vector<std::string> args =
      first_ ? std::vector<std::string>{"init"} : std::vector<std::string>{"org", "create"};
  first_ = false;
  for (const std::string& a :
       {std::string("--data-dir"), data_.string(), std::string("--org"), slug,
        std::string("--org-name"), "Clinic " + slug, std::string("--owner"), owner}) {
    args.push_back(a);
  }
  const ProcessResult r = RunCarewire(args);
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  std::smatch m;
  const std::regex line("owner " + owner + " one-time password: (\\S+)\n");
  if (!std::regex_search(r.out, m, line)) {
    ADD_FAILURE() << "no one-time password in " << r.out;
    return "";
  }
  // Shown to the operator on stdout only: stderr is the log, which others
  // read and keep.
  EXPECT_EQ(r.err.find(m[1].str()), std::string::npos) << "the one-time password is on stderr";
  return m[1].str();
}

void Deployment::Start() {
  // Never two servers on one data directory: a previous one still running
  // is killed before the next starts.
  server_.reset();
  server_ = std::make_unique<ServerProcess>(
      ServerProcess::Options{.env = env_, .data_dir = data_.string()});
}

void Deployment::StopAndVerifyAudit() {
  if (!server_) {
    ADD_FAILURE() << "no server was started";
    return;
  }
  EXPECT_EQ(server_->Stop(SIGTERM), 0) << server_->Stderr();
  const ProcessResult r = RunCarewire({"audit", "verify", "--data-dir", data_.string()});
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(r.out.rfind("audit ok:", 0), 0u) << r.out;
}

}  // namespace cw::testing
