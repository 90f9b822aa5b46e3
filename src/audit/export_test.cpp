#include "audit/export.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <sstream>

#include "audit/test_support.hpp"

namespace cw::audit {
namespace {

using testing::MakeEvent;
using testing::TempDir;
using testing::TimeAt;

// Splits RFC 4180 text into records of fields (quoted fields may hold CR, LF,
// commas and doubled quotes).
std::vector<std::vector<std::string>> ParseCsv(const std::string& text) {
  std::vector<std::vector<std::string>> records;
  std::vector<std::string> record;
  std::string field;
  bool quoted = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field.push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field.push_back(c);
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      record.push_back(field);
      field.clear();
    } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
      record.push_back(field);
      field.clear();
      records.push_back(record);
      record.clear();
      ++i;
    } else {
      field.push_back(c);
    }
  }
  EXPECT_TRUE(field.empty() && record.empty()) << "CSV does not end with CRLF";
  return records;
}

class AuditExportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = testing::OpenDatabase(dir_.File("carewire.db"));
    ASSERT_TRUE(db_);
  }

  void AppendAll(const std::vector<Event>& events) {
    ASSERT_TRUE(db_->Write([&](storage::Transaction& txn) -> Status {
      for (std::size_t i = 0; i < events.size(); ++i) {
        auto seq = Append(txn, events[i], TimeAt(static_cast<int>(i)));
        if (!seq) return seq.error();
      }
      return Ok();
    }));
  }

  std::vector<StoredEvent> Stored() {
    std::vector<StoredEvent> events;
    EXPECT_TRUE(ForEach(*db_, Filter{}, [&](const StoredEvent& e) -> Status {
      events.push_back(e);
      return Ok();
    }));
    return events;
  }

  TempDir dir_;
  std::unique_ptr<storage::Database> db_;
};

TEST_F(AuditExportTest, JsonLinesCarryEveryFieldAndReverify) {
  std::vector<Event> events;
  for (int i = 0; i < 30; ++i) events.push_back(MakeEvent(i));
  events[3].actor_id = "Zoë \"quoted\" \\ back";
  AppendAll(events);

  std::ostringstream out;
  ASSERT_TRUE(Export(*db_, ExportFormat::kJsonLines, "", "", out));
  std::istringstream lines(out.str());
  const auto stored = Stored();
  std::size_t n = 0;
  Hash previous{};
  for (std::string line; std::getline(lines, line); ++n) {
    ASSERT_LT(n, stored.size());
    const boost::json::object o = boost::json::parse(line).as_object();
    EXPECT_EQ(o.size(), 14u);
    auto text = [&o](const char* key) -> std::string {
      const auto& v = o.at(key);
      return v.is_null() ? std::string() : std::string(v.as_string());
    };
    Event e;
    e.org_id = text("org_id");
    e.actor_type = *ParseActorType(text("actor_type"));
    e.actor_id = text("actor_id");
    e.action = text("action");
    e.target_type = text("target_type");
    e.target_id = text("target_id");
    e.patient_id = text("patient_id");
    e.outcome = *ParseOutcome(text("outcome"));
    e.source_address = text("source_address");
    e.request_id = text("request_id");
    e.details = text("details");
    EXPECT_EQ(e, events[n]);
    EXPECT_EQ(o.at("seq").as_int64(), static_cast<std::int64_t>(n + 1));
    EXPECT_EQ(text("occurred_at"), TimeAt(static_cast<int>(n)));
    EXPECT_EQ(o.at("org_id").is_null(), events[n].org_id.empty());
    // The export alone is enough to recompute the chain.
    const Hash hash = ChainHash(previous, static_cast<std::int64_t>(n + 1), text("occurred_at"), e);
    EXPECT_EQ(text("hash"), HexHash(hash));
    previous = hash;
  }
  EXPECT_EQ(n, events.size());
}

TEST_F(AuditExportTest, CsvQuotesAndNeutralizesFormulas) {
  std::vector<Event> events(9, MakeEvent(1));
  events[0].actor_id = "a,b";
  events[1].actor_id = "say \"hi\"";
  events[2].actor_id = "=HYPERLINK(\"http://x\")";
  events[3].actor_id = "+1";
  events[4].actor_id = "-2+3";
  events[5].actor_id = "@SUM(A1)";
  events[6].actor_id = "plain";
  events[7].actor_id = "";
  events[8].details = "{\"a\":1,\"b\":\"=x\"}";
  AppendAll(events);

  std::ostringstream out;
  ASSERT_TRUE(Export(*db_, ExportFormat::kCsv, "", "", out));
  const auto records = ParseCsv(out.str());
  ASSERT_EQ(records.size(), events.size() + 1);
  EXPECT_EQ(records[0],
            (std::vector<std::string>{"seq", "occurred_at", "org_id", "actor_type", "actor_id",
                                      "action", "target_type", "target_id", "patient_id", "outcome",
                                      "source_address", "request_id", "details", "hash"}));
  const std::vector<std::string> actor_ids = {"a,b",   "say \"hi\"", "'=HYPERLINK(\"http://x\")",
                                              "'+1",   "'-2+3",      "'@SUM(A1)",
                                              "plain", "",           "user-1"};
  const auto stored = Stored();
  for (std::size_t i = 0; i < events.size(); ++i) {
    const auto& r = records[i + 1];
    ASSERT_EQ(r.size(), 14u);
    EXPECT_EQ(r[0], std::to_string(i + 1));
    EXPECT_EQ(r[1], TimeAt(static_cast<int>(i)));
    EXPECT_EQ(r[4], actor_ids[i]) << i;
    EXPECT_EQ(r[13], HexHash(stored[i].hash));
  }
  EXPECT_EQ(records[9][12], "{\"a\":1,\"b\":\"=x\"}");
  EXPECT_EQ(records[1][12], "");  // empty details

  EXPECT_EQ(CsvField("\tx"), "'\tx");
  EXPECT_EQ(CsvField("\rx"), "\"'\rx\"");
  EXPECT_EQ(CsvField("a\nb"), "\"a\nb\"");
  EXPECT_EQ(CsvField("-"), "'-");
  EXPECT_EQ(CsvField("x=1"), "x=1");
}

TEST_F(AuditExportTest, TimeBoundsSelectAHalfOpenRange) {
  std::vector<Event> events;
  for (int i = 0; i < 20; ++i) events.push_back(MakeEvent(i));
  AppendAll(events);

  auto seqs = [&](std::string_view from, std::string_view to) {
    std::ostringstream out;
    EXPECT_TRUE(Export(*db_, ExportFormat::kJsonLines, from, to, out));
    std::vector<std::int64_t> got;
    std::istringstream lines(out.str());
    for (std::string line; std::getline(lines, line);) {
      got.push_back(boost::json::parse(line).at("seq").as_int64());
    }
    return got;
  };
  EXPECT_EQ(seqs(TimeAt(5), TimeAt(8)), (std::vector<std::int64_t>{6, 7, 8}));
  EXPECT_EQ(seqs("2026-01-01T00:00:17Z", ""), (std::vector<std::int64_t>{18, 19, 20}));
  EXPECT_EQ(seqs("", "2026-01-01T01:00:02+01:00"), (std::vector<std::int64_t>{1, 2}));
  EXPECT_TRUE(seqs("2026-01-02", "").empty());
  EXPECT_EQ(seqs("2025-12-31", "2026-01-02").size(), 20u);

  std::ostringstream out;
  EXPECT_EQ(Export(*db_, ExportFormat::kCsv, "soon", "", out).error(), Error::kInvalidFilter);
}

TEST_F(AuditExportTest, AFailingStreamStopsTheExport) {
  AppendAll({MakeEvent(1), MakeEvent(2)});
  std::ostringstream out;
  out.setstate(std::ios::badbit);
  const Status status = Export(*db_, ExportFormat::kJsonLines, "", "", out);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error(), Error::kExportWrite);
}

}  // namespace
}  // namespace cw::audit
