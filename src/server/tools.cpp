#include "server/tools.hpp"

#include <iostream>

#include "audit/audit_log.hpp"
#include "audit/checkpoint.hpp"
#include "audit/export.hpp"
#include "audit/timestamp.hpp"
#include "audit/verify.hpp"
#include "core/error.hpp"
#include "core/time.hpp"
#include "identity/organizations.hpp"
#include "keys/key_store.hpp"
#include "server/deployment.hpp"

namespace cw::server {
namespace {

constexpr int kFailed = 1;

int ReportCreated(const identity::NewOrganization& org, std::ostream& out) {
  out << "organization " << org.slug << " created\n"
      << "owner " << org.owner_username << " one-time password: " << org.one_time_password << "\n"
      << "(shown once, here only; the owner replaces it at the first sign-in)\n";
  return 0;
}

int AddOrganization(Deployment& d, const OrgSpec& spec, bool first, std::ostream& out,
                    std::ostream& err) {
  std::string problem;
  auto prepared = identity::PrepareOrganization(spec.slug, spec.name, spec.owner, &problem);
  if (!prepared) {
    err << "carewire: " << problem << "\n";
    return kFailed;
  }
  bool exists = false;
  const std::string actor = OperatorActorId();
  auto written = d.db->Write([&](storage::Transaction& tx) -> Status {
    if (first) {
      auto any = tx.QueryOne("SELECT 1 FROM organizations LIMIT 1");
      if (!any) return any.error();
      if (*any) {
        exists = true;
        return core::Error::kConflict;
      }
    }
    return identity::InsertOrganization(tx, *d.kek, *prepared, actor, core::NowRfc3339());
  });
  if (!written) {
    if (exists) {
      err << "carewire: this data directory is initialized already; add organizations with "
             "`carewire org create`\n";
    } else if (written.error() == core::Error::kConflict) {
      err << "carewire: an organization with that slug exists already\n";
    } else {
      err << "carewire: cannot create the organization: " << written.error().message() << "\n";
    }
    return kFailed;
  }
  if (!audit::WriteCheckpointNow(*d.db, *d.signing_key, d.paths.checkpoints)) {
    err << "carewire: the organization was created but the audit checkpoint could not be "
           "written to "
        << d.paths.checkpoints << "\n";
    ReportCreated(*prepared, out);
    return kFailed;
  }
  return ReportCreated(*prepared, out);
}

// A real date or date-time, checked before anything is recorded (a shape
// check alone would let 2026-13-45 through to fail after the export event).
bool IsTimeBound(const std::string& t) { return t.empty() || audit::NormalizeRfc3339(t); }

}  // namespace

int Init(const core::Config& config, const OrgSpec& org, std::ostream& out, std::ostream& err) {
  Deployment d = OpenDeployment(config, OpenMode::kCreate);
  if (d.created) out << "created master key and deployment in " << d.paths.data_dir << "\n";
  const int status = AddOrganization(d, org, /*first=*/true, out, err);
  d.db->Close();
  return status;
}

int CreateOrg(const core::Config& config, const OrgSpec& org, std::ostream& out,
              std::ostream& err) {
  Deployment d = OpenDeployment(config, OpenMode::kExisting);
  const int status = AddOrganization(d, org, /*first=*/false, out, err);
  d.db->Close();
  return status;
}

int RotateKeys(const core::Config& config, const std::string& org_slug, bool master,
               std::ostream& out, std::ostream& err) {
  Deployment d = OpenDeployment(config, OpenMode::kExisting);
  const std::string actor = OperatorActorId();
  int status = 0;
  if (master) {
    if (std::getenv("CAREWIRE_MASTER_KEY") != nullptr) {  // NOLINT(concurrency-mt-unsafe)
      err << "carewire: the master key comes from CAREWIRE_MASTER_KEY; to rotate it, add a "
             "version to that value (\"1 <hex>,2 <hex>\") and run this with a key file, or "
             "rotate with a key file\n";
      d.db->Close();
      return kFailed;
    }
    // 1. A new version in the file: every key still opens with the old one.
    const std::uint32_t version = crypto::AddMasterKeyVersion(d.paths.master_key);
    auto kek = crypto::LoadMasterKey(d.paths.master_key, std::nullopt);
    // 2. Every stored key re-wrapped under it, with the audit event, at once.
    std::int64_t rewrapped = 0;
    auto written = d.db->Write([&](storage::Transaction& tx) -> Status {
      auto count = keys::RewrapAllKeys(tx, *kek);
      if (!count) return count.error();
      rewrapped = *count;
      audit::Event event;
      event.actor_id = actor;
      event.action = "keys.master_rotated";
      event.target_type = "master_key";
      event.target_id = std::to_string(version);
      event.details = "{\"rewrapped\":" + std::to_string(rewrapped) + "}";
      return audit::Record(tx, event, core::NowRfc3339());
    });
    if (!written) {
      err << "carewire: re-wrapping failed (" << written.error().message()
          << "); every key still opens with the versions in the key file; run the command "
             "again\n";
      d.db->Close();
      return kFailed;
    }
    // 3. Only now is the old version unused; a crash before this line leaves
    // both versions in the file, which is harmless.
    crypto::KeepOnlyMasterKeyVersion(d.paths.master_key, version);
    out << "master key version " << version << ": " << rewrapped << " keys re-wrapped\n";
  } else {
    std::vector<std::pair<std::string, std::string>> orgs;  // id, slug
    auto read = d.db->Read([&](storage::Transaction& tx) -> Status {
      auto rows =
          org_slug.empty()
              ? tx.QueryAll("SELECT id, slug FROM organizations ORDER BY slug")
              : tx.QueryAll("SELECT id, slug FROM organizations WHERE slug = ?", {org_slug});
      if (!rows) return rows.error();
      for (const auto& row : *rows) orgs.emplace_back(row.Text(0), row.Text(1));
      return Ok();
    });
    if (!read || orgs.empty()) {
      err << "carewire: " << (org_slug.empty() ? "no organizations" : "no such organization")
          << "\n";
      d.db->Close();
      return kFailed;
    }
    for (const auto& [id, slug] : orgs) {
      std::uint32_t version = 0;
      auto written = d.db->Write([&](storage::Transaction& tx) -> Status {
        const std::string now = core::NowRfc3339();
        auto added = keys::AddDataKeyVersion(tx, *d.kek, id, now);
        if (!added) return added.error();
        version = *added;
        audit::Event event;
        event.org_id = id;
        event.actor_id = actor;
        event.action = "keys.rotated";
        event.target_type = "data_key";
        event.target_id = std::to_string(version);
        return audit::Record(tx, event, now);
      });
      if (!written) {
        err << "carewire: " << slug << ": rotation failed: " << written.error().message() << "\n";
        status = kFailed;
        continue;
      }
      out << slug << ": data key version " << version
          << "; the server re-seals older values in the background\n";
    }
  }
  if (!audit::WriteCheckpointNow(*d.db, *d.signing_key, d.paths.checkpoints)) {
    err << "carewire: the audit checkpoint could not be written to " << d.paths.checkpoints << "\n";
    status = kFailed;
  }
  d.db->Close();
  return status;
}

int VerifyAudit(const core::Config& config, std::ostream& out, std::ostream& err) {
  Deployment d = OpenDeployment(config, OpenMode::kExisting);
  audit::VerifyOptions options;
  options.public_key = d.keys.audit_public_key;
  auto checkpoints = audit::ReadCheckpoints(d.paths.checkpoints);
  if (!checkpoints) {
    err << "audit verification failed: cannot read the checkpoint file " << d.paths.checkpoints
        << ": " << checkpoints.error().message() << "\n";
    d.db->Close();
    return kFailed;
  }
  options.checkpoints = std::move(*checkpoints);
  auto report = audit::Verify(*d.db, options);
  d.db->Close();
  if (!report) {
    err << "audit verification failed: " << report.error().message() << "\n";
    return kFailed;
  }
  if (!report->ok) {
    out << "audit verification failed at sequence " << report->first_bad_seq << ": "
        << report->problem << "\n";
    return kFailed;
  }
  out << "audit ok: " << report->events << " events, " << options.checkpoints.size()
      << " checkpoints\n";
  return 0;
}

int ExportAudit(const core::Config& config, const std::string& format, const std::string& from,
                const std::string& to, std::ostream& out, std::ostream& err) {
  audit::ExportFormat f;
  if (format == "jsonl") {
    f = audit::ExportFormat::kJsonLines;
  } else if (format == "csv") {
    f = audit::ExportFormat::kCsv;
  } else {
    err << "carewire: --format must be jsonl or csv\n";
    return kFailed;
  }
  if (!IsTimeBound(from) || !IsTimeBound(to)) {
    err << "carewire: --from and --to take an RFC 3339 date (2026-11-22) or date-time "
           "(2026-11-22T08:00:00Z)\n";
    return kFailed;
  }
  Deployment d = OpenDeployment(config, OpenMode::kExisting);
  // Reading the log is itself an access: recorded before the first byte goes
  // out, and no export without the record.
  auto recorded = d.db->Write([&](storage::Transaction& tx) -> Status {
    audit::Event event;
    event.actor_id = OperatorActorId();
    event.action = "audit.exported";
    event.target_type = "audit_log";
    event.details =
        "{\"format\":\"" + format + "\",\"from\":\"" + from + "\",\"to\":\"" + to + "\"}";
    return audit::Record(tx, event, core::NowRfc3339());
  });
  if (!recorded) {
    err << "carewire: cannot record the export in the audit log: " << recorded.error().message()
        << "\n";
    d.db->Close();
    return kFailed;
  }
  auto exported = audit::Export(*d.db, f, from, to, out);
  out.flush();
  d.db->Close();
  if (!exported) {
    err << "carewire: export failed: " << exported.error().message() << "\n";
    return kFailed;
  }
  return 0;
}

}  // namespace cw::server
