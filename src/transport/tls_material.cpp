#include "transport/tls_material.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>

#include "core/random.hpp"

namespace cw::transport {
namespace {

namespace fs = std::filesystem;

struct BioFree {
  void operator()(BIO* b) const { BIO_free_all(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct ExtFree {
  void operator()(X509_EXTENSION* e) const { X509_EXTENSION_free(e); }
};

void Check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("TLS certificate: ") + what);
}

void AddExtension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, ExtFree> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  Check(ext != nullptr, "cannot build extension");
  Check(X509_add_ext(cert, ext.get(), -1) == 1, "cannot add extension");
}

// Writes `pem` to `path` atomically with `mode`, never over an existing file.
void WriteNewFile(const fs::path& path, const std::string& pem, mode_t mode) {
  const fs::path tmp = path.string() + ".tmp";
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  Check(fd >= 0, "cannot create file in the data directory");
  std::size_t off = 0;
  while (off < pem.size()) {
    const ssize_t n = ::write(fd, pem.data() + off, pem.size() - off);
    if (n <= 0) {
      ::close(fd);
      Check(false, "cannot write file in the data directory");
    }
    off += static_cast<std::size_t>(n);
  }
  Check(::fsync(fd) == 0, "cannot sync file in the data directory");
  ::close(fd);
  Check(::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename file in the data directory");
}

std::string ToPem(const std::function<int(BIO*)>& write) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  Check(bio && write(bio.get()) == 1, "cannot encode PEM");
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

void GenerateSelfSigned(const fs::path& cert_path, const fs::path& key_path) {
  std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_EC_gen("P-256"));
  Check(key != nullptr, "cannot generate key");

  std::unique_ptr<X509, X509Free> cert(X509_new());
  Check(cert != nullptr, "cannot allocate certificate");
  Check(X509_set_version(cert.get(), 2) == 1, "cannot set version");

  unsigned char serial[16];
  core::RandomBytes(serial);
  serial[0] &= 0x7F;  // a positive serial number
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(BN_bin2bn(serial, sizeof serial, nullptr),
                                                 &BN_free);
  Check(bn && BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) != nullptr,
        "cannot set serial");

  // Valid from an hour ago (clock skew) for 397 days, the longest lifetime
  // browsers accept for a server certificate.
  Check(X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr, "cannot set validity");
  Check(X509_gmtime_adj(X509_getm_notAfter(cert.get()), 397L * 24 * 3600) != nullptr,
        "cannot set validity");

  X509_NAME* name = X509_get_subject_name(cert.get());
  Check(X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("Carewire"), -1, -1,
                                   0) == 1,
        "cannot set subject");
  Check(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                   reinterpret_cast<const unsigned char*>("localhost"), -1, -1,
                                   0) == 1,
        "cannot set subject");
  Check(X509_set_issuer_name(cert.get(), name) == 1, "cannot set issuer");
  Check(X509_set_pubkey(cert.get(), key.get()) == 1, "cannot set public key");

  AddExtension(cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  AddExtension(cert.get(), NID_key_usage, "critical,digitalSignature");
  AddExtension(cert.get(), NID_ext_key_usage, "serverAuth");
  AddExtension(cert.get(), NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1");
  AddExtension(cert.get(), NID_subject_key_identifier, "hash");

  Check(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0, "cannot sign certificate");

  const std::string key_pem = ToPem([&](BIO* b) {
    return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  });
  const std::string cert_pem = ToPem([&](BIO* b) { return PEM_write_bio_X509(b, cert.get()); });
  WriteNewFile(key_path, key_pem, 0600);
  WriteNewFile(cert_path, cert_pem, 0644);
}

}  // namespace

std::string CertificateFingerprint(const std::string& cert_file) {
  std::unique_ptr<BIO, BioFree> bio(BIO_new_file(cert_file.c_str(), "r"));
  Check(bio != nullptr, "cannot open certificate file");
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  Check(cert != nullptr, "certificate file holds no PEM certificate");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  Check(X509_digest(cert.get(), EVP_sha256(), md, &len) == 1, "cannot hash certificate");
  std::string out;
  char hex[4];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(hex, sizeof hex, i ? ":%02X" : "%02X", md[i]);
    out += hex;
  }
  return out;
}

TlsMaterial PrepareTlsMaterial(const std::string& data_dir, const std::string& cert_file,
                               const std::string& key_file) {
  TlsMaterial m;
  if (!cert_file.empty()) {
    m.cert_file = cert_file;
    m.key_file = key_file;
  } else {
    const fs::path dir = fs::path(data_dir) / "tls";
    std::error_code ec;
    fs::create_directories(dir, ec);
    Check(!ec, "cannot create the tls directory in the data directory");
    fs::permissions(dir, fs::perms::owner_all, ec);
    m.cert_file = (dir / "cert.pem").string();
    m.key_file = (dir / "key.pem").string();
    const bool have_cert = fs::exists(m.cert_file);
    const bool have_key = fs::exists(m.key_file);
    Check(have_cert == have_key, "only one of tls/cert.pem and tls/key.pem exists");
    if (!have_cert) {
      GenerateSelfSigned(m.cert_file, m.key_file);
      m.generated = true;
    }
  }
  struct stat st {};
  Check(::stat(m.key_file.c_str(), &st) == 0, "cannot read the key file");
  // A private key readable by others is a key that may be compromised.
  Check((st.st_mode & (S_IRWXG | S_IRWXO)) == 0,
        "the key file must not be readable by others (chmod 600)");
  m.fingerprint_sha256 = CertificateFingerprint(m.cert_file);
  return m;
}

}  // namespace cw::transport
