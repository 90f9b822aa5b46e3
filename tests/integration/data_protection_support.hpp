#pragma once

// Helpers shared by data_protection_test.cpp (which defines them),
// audit_cli_test.cpp and crash_test.cpp: running the carewire command,
// starting the server with extra environment, reading the database directly,
// exporting the audit log. The JSON and file helpers all tests share
// (Describe, Field, ReadFile, RandomHex, ...) come from support/api.hpp.

#include <boost/json.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "support/api.hpp"
#include "support/https_client.hpp"
#include "support/server_process.hpp"

namespace cw::testing::dp {

namespace fs = std::filesystem;
namespace json = boost::json;

using SqlValue = std::variant<std::monostate, std::int64_t, std::string, std::vector<std::uint8_t>>;
using SqlRow = std::vector<SqlValue>;

ProcessResult Cli(const std::vector<std::string>& args,
                  const std::map<std::string, std::string>& env = {},
                  std::chrono::milliseconds timeout = std::chrono::seconds(60));
std::map<std::string, std::string> ServerEnv(const fs::path& tmp,
                                             const std::map<std::string, std::string>& extra = {});
std::unique_ptr<ServerProcess> StartServer(const fs::path& data,
                                           const std::map<std::string, std::string>& env,
                                           const std::vector<std::string>& extra_args = {});
ProcessResult InitDeployment(const fs::path& data, const std::string& org, const std::string& owner,
                             const std::map<std::string, std::string>& env = {});
void CopyTree(const fs::path& from, const fs::path& to);
SqlValue Blob(const std::string& bytes);
std::string Bytes(const SqlValue& v);
std::int64_t Int(const SqlValue& v);
std::vector<SqlRow> SqlQuery(const fs::path& database, const std::string& sql,
                             const std::vector<SqlValue>& params = {}, bool writable = false);
std::int64_t SqlInt(const fs::path& database, const std::string& sql,
                    const std::vector<SqlValue>& params = {});
void ParallelFor(std::uint16_t port, int n, int threads,
                 const std::function<void(HttpsConnection&, int)>& fn);
HttpResponse PostProbe(HttpsConnection& c, const std::string& org, const std::string& value);
std::vector<json::object> ExportJsonl(const fs::path& data,
                                      const std::vector<std::string>& extra = {},
                                      ProcessResult* result = nullptr);
int CountAction(const std::vector<json::object>& events, const std::string& action);
bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds within,
             std::chrono::milliseconds every = std::chrono::milliseconds(20));

}  // namespace cw::testing::dp
