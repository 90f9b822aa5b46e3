// The carewire command: the server and the operator's tools.

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "core/config.hpp"
#include "server/serve.hpp"

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
    if (serve->parsed()) return cw::server::Serve(cfg);
  } catch (const cw::core::ConfigError& e) {
    std::cerr << "configuration error: " << e.what() << "\n";
    return kExitConfig;
  } catch (const std::exception& e) {
    std::cerr << "carewire: " << e.what() << "\n";
    return 1;
  }
  return 1;
}
