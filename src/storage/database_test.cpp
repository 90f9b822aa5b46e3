// Tests of the backend-independent parts of the storage seam, against fakes.

#include "storage/database.hpp"

#include <gtest/gtest.h>

#include <set>
#include <stdexcept>
#include <thread>

#include "core/error.hpp"

namespace cw::storage {
namespace {

TEST(StorageErrorTest, CategoryHasFixedDistinctMessages) {
  EXPECT_STREQ(ErrorCategory().name(), "cw.storage");
  const ErrorCode io = Error::kIo;
  EXPECT_EQ(&io.category(), &ErrorCategory());

  std::set<std::string> messages;
  for (int e = static_cast<int>(Error::kOk); e <= static_cast<int>(Error::kInternal); ++e) {
    const std::string message = ErrorCategory().message(e);
    EXPECT_FALSE(message.empty()) << e;
    EXPECT_NE(message, "unknown storage error") << e;
    messages.insert(message);
  }
  EXPECT_EQ(messages.size(), static_cast<std::size_t>(Error::kInternal) + 1);
  EXPECT_EQ(ErrorCategory().message(9999), "unknown storage error");
}

TEST(RowTest, TypedAccessorsReturnValues) {
  const Row row({nullptr, std::int64_t{-7}, 2.5, std::string("text"), Blob{1, 2}});
  EXPECT_EQ(row.size(), 5u);
  EXPECT_TRUE(row.IsNull(0));
  EXPECT_FALSE(row.IsNull(1));
  EXPECT_EQ(row.Int(1), -7);
  EXPECT_EQ(row.Real(2), 2.5);
  EXPECT_EQ(row.Text(3), "text");
  EXPECT_EQ(row.Bytes(4), (Blob{1, 2}));
}

TEST(RowTest, WrongTypeOrIndexThrowsLogicError) {
  const Row row({nullptr, std::int64_t{1}, 2.0, std::string("3"), Blob{4}});
  EXPECT_THROW(row.Int(0), std::logic_error);    // null is not an integer
  EXPECT_THROW(row.Real(1), std::logic_error);   // no silent integer -> real
  EXPECT_THROW(row.Int(2), std::logic_error);    // no silent real -> integer
  EXPECT_THROW(row.Int(3), std::logic_error);    // no parsing of text
  EXPECT_THROW(row.Text(4), std::logic_error);   // blob is not text
  EXPECT_THROW(row.Bytes(3), std::logic_error);  // text is not a blob
  EXPECT_THROW(row.IsNull(5), std::logic_error);
  EXPECT_THROW(row.Int(5), std::logic_error);
}

// Serves a fixed result and counts the rows it handed out, so a test can see
// that QueryOne stops early.
class FakeTransaction final : public Transaction {
 public:
  explicit FakeTransaction(std::vector<Row> rows, ErrorCode error = {})
      : rows_(std::move(rows)), error_(error) {}

  Result<std::int64_t> Execute(std::string_view, const std::vector<Value>&) override {
    return std::int64_t{0};
  }
  Result<std::int64_t> Insert(std::string_view, const std::vector<Value>&) override {
    return std::int64_t{0};
  }

  Status Query(std::string_view, const std::vector<Value>&,
               const std::function<Status(const Row&)>& on_row) override {
    for (const Row& row : rows_) {
      ++rows_visited;
      if (Status s = on_row(row); !s) return s;
    }
    if (error_) return error_;
    return Ok();
  }

  int rows_visited = 0;

 private:
  std::vector<Row> rows_;
  ErrorCode error_;
};

TEST(TransactionTest, QueryOneReturnsFirstRowAndStops) {
  FakeTransaction txn({Row({std::int64_t{1}}), Row({std::int64_t{2}}), Row({std::int64_t{3}})});
  auto row = txn.QueryOne("SELECT");
  ASSERT_TRUE(row);
  ASSERT_TRUE(row->has_value());
  EXPECT_EQ((*row)->Int(0), 1);
  EXPECT_EQ(txn.rows_visited, 1);
}

TEST(TransactionTest, QueryOneOfNoRowsIsNullopt) {
  FakeTransaction txn({});
  auto row = txn.QueryOne("SELECT");
  ASSERT_TRUE(row);
  EXPECT_FALSE(row->has_value());
}

TEST(TransactionTest, QueryOneAndAllPassErrorsOn) {
  FakeTransaction txn({}, Error::kBusy);
  auto one = txn.QueryOne("SELECT");
  ASSERT_FALSE(one);
  EXPECT_EQ(one.error(), Error::kBusy);
  auto all = txn.QueryAll("SELECT");
  ASSERT_FALSE(all);
  EXPECT_EQ(all.error(), Error::kBusy);
}

TEST(TransactionTest, QueryAllCollectsEveryRowInOrder) {
  FakeTransaction txn({Row({std::int64_t{1}}), Row({std::int64_t{2}}), Row({std::int64_t{3}})});
  auto rows = txn.QueryAll("SELECT");
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ((*rows)[0].Int(0), 1);
  EXPECT_EQ((*rows)[2].Int(0), 3);
}

// Runs each write on a thread of its own, as a real writer thread would.
class ThreadedFakeDatabase final : public Database {
 public:
  ~ThreadedFakeDatabase() override {
    for (auto& t : threads_) t.join();
  }
  void SubmitWrite(WriteWork work, WriteDone done) override {
    threads_.emplace_back([work = std::move(work), done = std::move(done)] {
      FakeTransaction txn({});
      done(work(txn));
    });
  }
  Status Read(const ReadWork&) override { return Ok(); }
  Status Ping() override { return Ok(); }
  int SchemaVersion() const override { return 0; }
  DatabaseStats Stats() const override { return {}; }
  void Close() override {}

 private:
  std::vector<std::thread> threads_;
};

TEST(DatabaseWriteTest, WaitsForAndReturnsTheOutcome) {
  ThreadedFakeDatabase db;
  bool ran = false;
  EXPECT_TRUE(db.Write([&ran](Transaction&) -> Status {
    ran = true;
    return Ok();
  }));
  EXPECT_TRUE(ran);  // Write returned only after the work ran

  const Status failed = db.Write([](Transaction&) -> Status { return core::Error::kConflict; });
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error(), core::Error::kConflict);
}

}  // namespace
}  // namespace cw::storage
