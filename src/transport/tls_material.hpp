#pragma once

// The server's certificate and key: the operator's files when configured,
// otherwise a self-signed certificate made once in the data directory.

#include <string>

#include "core/result.hpp"

namespace cw::transport {

struct TlsMaterial {
  std::string cert_file;
  std::string key_file;
  std::string fingerprint_sha256;  // colon-separated uppercase hex, as browsers show it
  bool generated = false;          // true when made by this start
};

// Uses cert_file/key_file when both are given. Otherwise uses
// DATA_DIR/tls/cert.pem and key.pem, creating a self-signed ECDSA P-256
// certificate (SAN localhost, 127.0.0.1, ::1; valid 397 days) when they do
// not exist yet. The key file is created with mode 0600.
// Throws std::runtime_error with a fixed message when files cannot be read or
// written: that is a start-up failure.
TlsMaterial PrepareTlsMaterial(const std::string& data_dir, const std::string& cert_file,
                               const std::string& key_file);

// SHA-256 fingerprint of the first certificate in a PEM file.
std::string CertificateFingerprint(const std::string& cert_file);

}  // namespace cw::transport
