#pragma once

// The operator's commands: init, org create, keys rotate, audit verify and
// audit export. Each returns the process exit status and writes its result
// on stdout (one-time passwords only there) and problems on stderr.

#include <iosfwd>
#include <string>

#include "core/config.hpp"

namespace cw::server {

struct OrgSpec {
  std::string slug;
  std::string name;
  std::string owner;
};

// Sets up the data directory (master key, database, deployment keys) and the
// first organization with its owner. Refuses when an organization exists.
int Init(const core::Config& config, const OrgSpec& org, std::ostream& out, std::ostream& err);

// Adds an organization with its owner to an initialized deployment.
int CreateOrg(const core::Config& config, const OrgSpec& org, std::ostream& out, std::ostream& err);

// Adds a data-key version for one organization (or all, when `org_slug` is
// empty); the server's background job re-seals older values. With `master`,
// rotates the master key instead: a new version in the key file, every
// stored key re-wrapped under it, then the old version dropped.
int RotateKeys(const core::Config& config, const std::string& org_slug, bool master,
               std::ostream& out, std::ostream& err);

// Verifies the whole hash chain and every checkpoint. Exit 0 and
// `audit ok: N events`, or exit 1 naming the first bad sequence number.
int VerifyAudit(const core::Config& config, std::ostream& out, std::ostream& err);

// Streams the audit events between `from` and `to` (RFC 3339, either empty)
// as JSON lines ("jsonl") or CSV ("csv").
int ExportAudit(const core::Config& config, const std::string& format, const std::string& from,
                const std::string& to, std::ostream& out, std::ostream& err);

}  // namespace cw::server
