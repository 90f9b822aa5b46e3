#include "crypto/master_key.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "core/random.hpp"

namespace cw::crypto {
namespace {

namespace fs = std::filesystem;

class MasterKeyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("cw-kek-" + core::RandomHex(8));
    fs::create_directories(dir_);
    path_ = (dir_ / "master.key").string();
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  std::string path_;
};

TEST_F(MasterKeyTest, CreatedFileIsOwnerOnlyAndLoads) {
  CreateMasterKeyFile(path_);
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_NE(LoadMasterKey(path_, std::nullopt), nullptr);
  EXPECT_THROW(CreateMasterKeyFile(path_), std::runtime_error);  // never overwritten
}

TEST_F(MasterKeyTest, RefusesAFileOthersCanRead) {
  CreateMasterKeyFile(path_);
  for (mode_t mode : {0640, 0604, 0660}) {
    ASSERT_EQ(::chmod(path_.c_str(), mode), 0);
    EXPECT_THROW(LoadMasterKey(path_, std::nullopt), std::runtime_error) << mode;
  }
}

TEST_F(MasterKeyTest, RefusesMissingOrMalformedKeys) {
  EXPECT_THROW(LoadMasterKey(path_, std::nullopt), std::runtime_error);
  EXPECT_THROW(LoadMasterKey(path_, std::string("abcd")), std::runtime_error);
  EXPECT_THROW(LoadMasterKey(path_, std::string(64, 'z')), std::runtime_error);
  EXPECT_NE(LoadMasterKey(path_, std::string(64, 'a')), nullptr);
}

TEST_F(MasterKeyTest, WrappedDataKeyUnwrapsOnlyForItsOrganizationAndVersion) {
  auto kek = LoadMasterKey(path_, std::string(64, '1'));
  auto dek = DataKey::Generate(3);
  const Bytes wrapped = kek->Wrap("org-a", *dek);
  auto back = kek->Unwrap("org-a", 3, wrapped);
  ASSERT_TRUE(back);
  EXPECT_EQ((*back)->version(), 3u);
  EXPECT_TRUE(std::equal(dek->bytes().begin(), dek->bytes().end(), (*back)->bytes().begin()));
  EXPECT_FALSE(kek->Unwrap("org-b", 3, wrapped));
  EXPECT_FALSE(kek->Unwrap("org-a", 4, wrapped));
  // Another master key cannot unwrap it: rotating the KEK means re-wrapping.
  auto other = LoadMasterKey(path_, std::string(64, '2'));
  EXPECT_FALSE(other->Unwrap("org-a", 3, wrapped));
  // The wrapped form does not contain the key.
  const std::string w(wrapped.begin(), wrapped.end());
  const std::string k(dek->bytes().begin(), dek->bytes().end());
  EXPECT_EQ(w.find(k), std::string::npos);
}

}  // namespace
}  // namespace cw::crypto
