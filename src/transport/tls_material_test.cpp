#include "transport/tls_material.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "core/random.hpp"

namespace cw::transport {
namespace {

namespace fs = std::filesystem;

class TlsMaterialTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("cw-tls-" + core::RandomHex(8));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(TlsMaterialTest, CreatesSelfSignedOnceWithPrivateKeyMode) {
  const TlsMaterial first = PrepareTlsMaterial(dir_.string(), "", "");
  EXPECT_TRUE(first.generated);
  EXPECT_EQ(first.fingerprint_sha256.size(), 32u * 3 - 1);
  struct stat st {};
  ASSERT_EQ(::stat(first.key_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const TlsMaterial second = PrepareTlsMaterial(dir_.string(), "", "");
  EXPECT_FALSE(second.generated);
  EXPECT_EQ(second.fingerprint_sha256, first.fingerprint_sha256);
}

TEST_F(TlsMaterialTest, RefusesKeyReadableByOthers) {
  const TlsMaterial m = PrepareTlsMaterial(dir_.string(), "", "");
  ASSERT_EQ(::chmod(m.key_file.c_str(), 0644), 0);
  EXPECT_THROW(PrepareTlsMaterial(dir_.string(), "", ""), std::runtime_error);
}

TEST_F(TlsMaterialTest, RefusesHalfAPair) {
  const TlsMaterial m = PrepareTlsMaterial(dir_.string(), "", "");
  fs::remove(m.cert_file);
  EXPECT_THROW(PrepareTlsMaterial(dir_.string(), "", ""), std::runtime_error);
}

}  // namespace
}  // namespace cw::transport
