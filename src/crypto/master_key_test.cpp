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

TEST_F(MasterKeyTest, WrappedKeyUnwrapsOnlyForItsOwnerPurposeAndVersion) {
  auto kek = LoadMasterKey(path_, std::string(64, '1'));
  auto dek = DataKey::Generate(3);
  const Bytes wrapped = kek->Wrap({"org-a", "data", 3}, *dek);
  auto back = kek->Unwrap({"org-a", "data", 3}, wrapped);
  ASSERT_TRUE(back);
  EXPECT_EQ((*back)->version(), 3u);
  EXPECT_TRUE(std::equal(dek->bytes().begin(), dek->bytes().end(), (*back)->bytes().begin()));
  EXPECT_FALSE(kek->Unwrap({"org-b", "data", 3}, wrapped));
  EXPECT_FALSE(kek->Unwrap({"org-a", "data", 4}, wrapped));
  EXPECT_FALSE(kek->Unwrap({"org-a", "blind_index", 3}, wrapped));
  // Another master key cannot unwrap it: rotating the KEK means re-wrapping.
  auto other = LoadMasterKey(path_, std::string(64, '2'));
  EXPECT_FALSE(other->Unwrap({"org-a", "data", 3}, wrapped));
  // The wrapped form does not contain the key.
  const std::string w(wrapped.begin(), wrapped.end());
  const std::string k(dek->bytes().begin(), dek->bytes().end());
  EXPECT_EQ(w.find(k), std::string::npos);
}

TEST_F(MasterKeyTest, AddedVersionWrapsNewKeysAndOldWrappingsStillOpen) {
  CreateMasterKeyFile(path_);
  auto v1 = LoadMasterKey(path_, std::nullopt);
  EXPECT_EQ(v1->version(), 1u);
  auto dek = DataKey::Generate(1);
  const Bytes old_wrapping = v1->Wrap({"org", "data", 1}, *dek);

  EXPECT_EQ(AddMasterKeyVersion(path_), 2u);
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto both = LoadMasterKey(path_, std::nullopt);
  EXPECT_EQ(both->version(), 2u);
  ASSERT_TRUE(both->Unwrap({"org", "data", 1}, old_wrapping));
  const Bytes new_wrapping = both->Wrap({"org", "data", 1}, *dek);
  EXPECT_EQ(*KeyEncryptionKey::WrappedVersion(new_wrapping), 2u);

  KeepOnlyMasterKeyVersion(path_, 2);
  auto only = LoadMasterKey(path_, std::nullopt);
  EXPECT_TRUE(only->Unwrap({"org", "data", 1}, new_wrapping));
  EXPECT_FALSE(only->Unwrap({"org", "data", 1}, old_wrapping));
  EXPECT_FALSE(fs::exists(path_ + ".new"));
}

TEST_F(MasterKeyTest, EnvironmentValueMayListSeveralVersions) {
  const std::string a(64, 'a'), b(64, 'b');
  auto kek = LoadMasterKey(path_, "1 " + a + ",2 " + b);
  EXPECT_EQ(kek->version(), 2u);
  EXPECT_THROW(LoadMasterKey(path_, "1 " + a + ",1 " + b), std::runtime_error);
  EXPECT_THROW(LoadMasterKey(path_, "x " + a), std::runtime_error);
  EXPECT_THROW(LoadMasterKey(path_, std::string(" \n")), std::runtime_error);
}

}  // namespace
}  // namespace cw::crypto
