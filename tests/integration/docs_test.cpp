// Documentation that must stay true to the code: every route is in
// docs/openapi.yaml (and nothing there is missing from the router), and
// docs/configuration.md is exactly what the schema generates.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/random.hpp"
#include "identity/permissions.hpp"
#include "keys/key_store.hpp"
#include "server/serve.hpp"
#include "storage/sqlite/sqlite_database.hpp"

namespace cw {
namespace {

namespace fs = std::filesystem;

std::string ReadSource(const std::string& relative) {
  const char* root = std::getenv("CW_TEST_SOURCE_DIR");  // NOLINT
  EXPECT_NE(root, nullptr);
  std::ifstream in(fs::path(root ? root : ".") / relative);
  EXPECT_TRUE(in.good()) << relative;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// (METHOD path) pairs under `paths:` in an OpenAPI YAML file: a path is a
// two-space-indented key starting with '/', a method a four-space-indented
// key. Each maps to the operation's `x-access` line ("" when it has none).
std::map<std::string, std::string> DocumentedOperations(const std::string& yaml) {
  std::map<std::string, std::string> ops;
  std::string current;
  std::istringstream lines(yaml);
  std::string line, path;
  bool in_paths = false;
  static const std::set<std::string> kMethods = {"get",   "put",  "post",   "delete",
                                                 "patch", "head", "options"};
  while (std::getline(lines, line)) {
    if (line.rfind("paths:", 0) == 0) {
      in_paths = true;
      continue;
    }
    if (!in_paths) continue;
    if (!line.empty() && line[0] != ' ' && line[0] != '#') break;  // next top-level key
    if (line.rfind("  /", 0) == 0 && line.back() == ':') {
      path = line.substr(2, line.size() - 3);
      if (path.size() > 1 && path.front() == '\'') path = path.substr(1, path.size() - 2);
    } else if (line.rfind("    ", 0) == 0 && line[4] != ' ' && line.back() == ':') {
      std::string method = line.substr(4, line.size() - 5);
      if (kMethods.count(method)) {
        for (char& c : method) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        current = method + " " + path;
        ops[current] = "";
      }
    } else if (line.rfind("      x-access: ", 0) == 0 && !current.empty()) {
      ops[current] = line.substr(16);
    }
  }
  return ops;
}

// How docs/openapi.yaml's `x-access` states a route's access rule.
std::string AccessText(const api::Access& a) {
  using Scope = api::Access::Scope;
  std::string text;
  switch (a.scope) {
    case Scope::kPublic:
      return "public";
    case Scope::kPasswordChange:
      return "any session";
    case Scope::kMfaEnrollment:
      return "MFA enrolment";
    case Scope::kSignedIn:
      text = a.own_account ? "own account" : std::string(identity::PermissionName(a.permission));
      break;
  }
  if (a.recent_reauth) text += ", recent re-authentication";
  return text;
}

TEST(DocsTest, EveryRouteIsDocumentedInOpenApiAndViceVersa) {
  const fs::path dir = fs::temp_directory_path() / ("cw-docs-" + core::RandomHex(8));
  fs::create_directories(dir);
  {
    storage::SqliteOptions options;
    options.path = (dir / "db").string();
    auto db = storage::OpenSqlite(options);
    ASSERT_TRUE(db);
    core::Config config;
    config.diagnostics.write_probe = true;  // every optional route on
    config.diagnostics.sealed_probe = true;
    api::Router router;
    metrics::Registry metrics;
    // Routes are only registered here, never called, so the key store needs
    // no keys.
    keys::KeyStore keys(**db, nullptr, std::chrono::milliseconds(1000));
    identity::Sessions sessions(**db, keys);
    identity::Users users(**db);
    identity::OrgSettingsStore orgs(**db);
    identity::BreakGlass break_glass(**db, keys);
    api::LiveSockets live;
    core::WorkerPool pool(1, 1);
    messaging::LiveHub hub;
    messaging::Messaging messaging(**db, keys, hub);
    server::AddRoutes(router, config,
                      {**db, keys, sessions, users, orgs, break_glass, live, pool, metrics,
                       messaging, hub, pool});

    std::map<std::string, std::string> registered;
    for (const auto& r : router.routes()) {
      registered[std::string(api::MethodName(r->method).view()) + " " + r->pattern] =
          AccessText(r->access);
    }
    const auto documented = DocumentedOperations(ReadSource("docs/openapi.yaml"));
    for (const auto& [op, access] : registered) {
      auto it = documented.find(op);
      EXPECT_TRUE(it != documented.end()) << "undocumented route: " << op;
      if (it != documented.end()) {
        EXPECT_EQ(it->second, access) << "x-access of " << op << " differs from the router";
      }
    }
    for (const auto& [op, access] : documented)
      EXPECT_TRUE(registered.count(op)) << "documented but absent: " << op;
    EXPECT_FALSE(registered.empty());
    (*db)->Close();
  }
  fs::remove_all(dir);
}

// docs/roles.md holds one table row per built-in role, exactly as the code's
// table grants, and one row per permission.
TEST(DocsTest, RolesDocumentMatchesTheBuiltInRoleTable) {
  const std::string doc = ReadSource("docs/roles.md");
  for (const identity::BuiltInRole& role : identity::BuiltInRoles()) {
    std::string row = "| `" + std::string(role.name) + "` | ";
    bool first = true;
    for (const std::string& p : identity::PermissionNames(role.permissions)) {
      row += (first ? "`" : ", `") + p + "`";
      first = false;
    }
    row += " |";
    EXPECT_NE(doc.find(row + "\n"), std::string::npos)
        << "docs/roles.md lacks the row\n" << row;
  }
  for (const identity::Permission p : identity::AllPermissions()) {
    EXPECT_NE(doc.find("| `" + std::string(identity::PermissionName(p)) + "` |"),
              std::string::npos)
        << "docs/roles.md does not describe " << identity::PermissionName(p);
  }
}

TEST(DocsTest, ConfigurationReferenceIsGeneratedFromTheSchema) {
  EXPECT_EQ(ReadSource("docs/configuration.md"), server::ConfigurationReference())
      << "regenerate with: carewire config reference > docs/configuration.md";
}

}  // namespace
}  // namespace cw
