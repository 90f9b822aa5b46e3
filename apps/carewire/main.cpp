// The carewire command: the server and the operator's tools.

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "core/config.hpp"
#include "server/serve.hpp"
#include "server/tools.hpp"

namespace {

constexpr int kExitConfig = 2;

struct Common {
  std::string config_file;
  std::string data_dir;
  std::string listen;
  std::string log_level;
};

cw::core::Config Load(const Common& c) {
  cw::core::ConfigSources sources;
  sources.file = c.config_file;
  if (sources.file.empty()) {
    if (const char* env = std::getenv("CAREWIRE_CONFIG")) sources.file = env;  // NOLINT
  }
  sources.environment = cw::core::ProcessEnvironment();
  if (!c.data_dir.empty()) sources.flags["server.data_dir"] = c.data_dir;
  if (!c.listen.empty()) sources.flags["server.listen"] = c.listen;
  if (!c.log_level.empty()) sources.flags["log.level"] = c.log_level;
  return cw::core::LoadConfig(sources);
}

void AddCommon(CLI::App* cmd, Common& c, bool server_flags) {
  cmd->add_option("--config", c.config_file, "TOML configuration file");
  cmd->add_option("--data-dir", c.data_dir, "data directory (server.data_dir)");
  if (server_flags) {
    cmd->add_option("--listen", c.listen, "HOST:PORT to listen on (server.listen)");
    cmd->add_option("--log-level", c.log_level, "debug, info, warn or error (log.level)");
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Carewire: secure messaging for clinics"};
  app.require_subcommand(1);
  Common common;

  auto* serve = app.add_subcommand("serve", "run the server");
  AddCommon(serve, common, true);
  cw::server::ServeOptions serve_options;
  serve->add_flag("--accept-broken-audit-chain", serve_options.accept_broken_audit_chain,
                  "serve even though the audit log does not verify (recorded in the log)");

  cw::server::OrgSpec org;
  auto add_org_options = [&](CLI::App* cmd) {
    AddCommon(cmd, common, false);
    cmd->add_option("--org", org.slug, "organization slug (a-z, 0-9, -)")->required();
    cmd->add_option("--org-name", org.name, "organization name")->required();
    cmd->add_option("--owner", org.owner, "the owner's username")->required();
  };
  auto* init =
      app.add_subcommand("init", "set up keys, database, the first organization and its owner");
  add_org_options(init);

  auto* org_cmd = app.add_subcommand("org", "organizations");
  org_cmd->require_subcommand(1);
  auto* org_create = org_cmd->add_subcommand("create", "add an organization and its owner");
  add_org_options(org_create);

  auto* keys_cmd = app.add_subcommand("keys", "key management");
  keys_cmd->require_subcommand(1);
  auto* rotate = keys_cmd->add_subcommand(
      "rotate", "new data-key version (old data stays readable), or a new master key");
  AddCommon(rotate, common, false);
  std::string rotate_org;
  bool rotate_master = false;
  rotate->add_option("--org", rotate_org, "only this organization (default: all)");
  rotate->add_flag("--master", rotate_master, "rotate the master key and re-wrap every key");

  auto* audit_cmd = app.add_subcommand("audit", "the audit log");
  audit_cmd->require_subcommand(1);
  auto* verify = audit_cmd->add_subcommand("verify", "check the hash chain and checkpoints");
  AddCommon(verify, common, false);
  auto* exporter = audit_cmd->add_subcommand("export", "write the audit events to stdout");
  AddCommon(exporter, common, false);
  std::string export_format = "jsonl";
  std::string export_from;
  std::string export_to;
  exporter->add_option("--format", export_format, "jsonl or csv")
      ->check(CLI::IsMember({"jsonl", "csv"}));
  exporter->add_option("--from", export_from, "first time included (UTC, RFC 3339)");
  exporter->add_option("--to", export_to, "first time excluded (UTC, RFC 3339)");

  auto* migrate = app.add_subcommand("migrate", "apply pending database migrations");
  AddCommon(migrate, common, false);

  auto* config = app.add_subcommand("config", "configuration tools");
  config->require_subcommand(1);
  auto* check = config->add_subcommand("check", "validate the configuration");
  AddCommon(check, common, true);
  auto* show = config->add_subcommand("show", "print the effective configuration as TOML");
  AddCommon(show, common, true);
  auto* reference = config->add_subcommand("reference", "print the configuration reference");

  CLI11_PARSE(app, argc, argv);

  try {
    if (reference->parsed()) {
      std::cout << cw::server::ConfigurationReference();
      return 0;
    }
    const cw::core::Config cfg = Load(common);
    if (check->parsed()) {
      std::cout << "configuration ok\n";
      return 0;
    }
    if (show->parsed()) {
      std::cout << cw::server::ShowConfiguration(cfg);
      return 0;
    }
    if (migrate->parsed()) return cw::server::Migrate(cfg);
    if (serve->parsed()) return cw::server::Serve(cfg, serve_options);
    if (init->parsed()) return cw::server::Init(cfg, org, std::cout, std::cerr);
    if (org_create->parsed()) return cw::server::CreateOrg(cfg, org, std::cout, std::cerr);
    if (rotate->parsed()) {
      if (rotate_master && !rotate_org.empty()) {
        std::cerr << "carewire: --master rotates the deployment's master key; it takes no --org\n";
        return 1;
      }
      return cw::server::RotateKeys(cfg, rotate_org, rotate_master, std::cout, std::cerr);
    }
    if (verify->parsed()) return cw::server::VerifyAudit(cfg, std::cout, std::cerr);
    if (exporter->parsed()) {
      return cw::server::ExportAudit(cfg, export_format, export_from, export_to, std::cout,
                                     std::cerr);
    }
  } catch (const cw::core::ConfigError& e) {
    std::cerr << "configuration error: " << e.what() << "\n";
    return kExitConfig;
  } catch (const std::exception& e) {
    std::cerr << "carewire: " << e.what() << "\n";
    return 1;
  }
  return 1;
}
