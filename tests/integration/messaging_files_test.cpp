// Attachments, push notifications, urgent follow-up, forwarding, legal hold
// and message lifespans, against the real binary over TLS: what a clinic's
// staff do with files and urgent pages, and what its privacy officer relies
// on (nothing readable at rest, nothing identifying in a push payload, holds
// that stop destruction).
//
// One deployment per test (CTest runs each test in a process of its own):
// clinic-f with its owner and two nurses, all signed in with TOTP, and a
// server whose jobs run every 200 ms and whose push notifications are
// recorded in a file.

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>

#include "support/accounts.hpp"
#include "support/api.hpp"
#include "support/deployment.hpp"
#include "support/https_client.hpp"
#include "support/server_process.hpp"
#include "support/sql.hpp"

namespace cw::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;
using Headers = std::vector<std::pair<std::string, std::string>>;

const std::string kPassword = "amber-kettle-harbor-58";

// The smallest PNG libmagic names image/png: signature and IHDR chunk.
std::string Png() {
  std::string png = "\x89PNG\r\n\x1a\n";
  png += std::string("\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00", 21);
  png += std::string("\x90\x77\x53\xde", 4);
  return png;
}

// Every file under `dir`, read whole, with the ones that contain `needle`.
std::vector<std::string> FilesContaining(const fs::path& dir, const std::string& needle) {
  std::vector<std::string> out;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file() && ReadFile(entry.path()).find(needle) != std::string::npos) {
      out.push_back(entry.path().string());
    }
  }
  return out;
}

class MessagingFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string otp = deployment_.AddOrg("clinic-f", "olga");
    ASSERT_FALSE(otp.empty());
    deployment_.Start();
    owner_ = ActivateAccount(port(), "clinic-f", "olga", otp, kPassword);
    ann_ = AddNurse("ann");
    ben_ = AddNurse("ben");
    ASSERT_FALSE(ann_.token.empty());
    ASSERT_FALSE(ben_.token.empty());
  }

  std::uint16_t port() const { return deployment_.port(); }
  const fs::path& data() const { return deployment_.data(); }

  TestAccount AddNurse(const std::string& name) {
    const auto r = Call("POST", "/api/v1/users", owner_,
                        json::serialize(json::object{{"username", name}, {"roles", {"nurse"}}}));
    EXPECT_EQ(r.status, 201) << r.body;
    TestAccount a = ActivateAccount(port(), "clinic-f", name,
                                    Field(Parse(r.body), "one_time_password"), kPassword);
    a.user_id = Field(Parse(r.body), "id");
    return a;
  }

  HttpResponse Call(const std::string& method, const std::string& target,
                    const TestAccount& who, const std::string& body = "",
                    Headers extra = {}) {
    Headers h = BearerHeader(who.token);
    if (!body.empty() && extra.empty()) h.emplace_back("Content-Type", "application/json");
    for (auto& e : extra) h.push_back(std::move(e));
    return Fetch(port(), method, target, body, h);
  }

  // A group with the owner as admin and both nurses.
  std::string Group(const std::string& title) {
    const auto r = Call("POST", "/api/v1/conversations", owner_,
                        json::serialize(json::object{{"kind", "group"},
                                                     {"title", title},
                                                     {"members", {ann_.user_id, ben_.user_id}}}));
    EXPECT_EQ(r.status, 201) << r.body;
    return Field(Parse(r.body), "id");
  }

  HttpResponse SendText(const TestAccount& who, const std::string& conversation,
                        json::object message) {
    static int n = 0;
    message["client_txn_id"] = "t" + std::to_string(++n);
    return Call("POST", "/api/v1/conversations/" + conversation + "/messages", who,
                json::serialize(message));
  }

  HttpResponse Upload(const TestAccount& who, const std::string& conversation,
                      const std::string& bytes, const std::string& encoded_name) {
    return Call("POST", "/api/v1/conversations/" + conversation + "/attachments", who, bytes,
                {{"Content-Type", "application/octet-stream"},
                 {"X-Attachment-Name", encoded_name}});
  }

  // The recorded push notifications, one JSON line each.
  std::vector<json::object> Pushes() {
    std::vector<json::object> out;
    std::istringstream lines(ReadFile(push_file_));
    for (std::string line; std::getline(lines, line);) out.push_back(Parse(line));
    return out;
  }

  bool Reauthenticate(TestAccount& who) {
    json::object body{{"password", who.password}};
    if (!who.totp_secret.empty()) body["code"] = who.NextCode();
    const auto r = Call("POST", "/api/v1/auth/reauth", who, json::serialize(body));
    EXPECT_EQ(r.status, 204) << r.body;
    return r.status == 204;
  }

  // The push file lies outside the data directory, which tests scan for
  // plaintext.
  TempDir dir_;
  fs::path push_file_ = dir_.path() / "push.jsonl";
  Deployment deployment_{
      std::map<std::string, std::string>{{"CAREWIRE_MESSAGING_PUSH_SINK_FILE", push_file_.string()},
                                         {"CAREWIRE_MESSAGING_JOBS_INTERVAL_MS", "200"},
                                         {"CAREWIRE_MESSAGING_URGENT_REMIND_AFTER_MS", "1000"},
                                         {"CAREWIRE_MESSAGING_URGENT_ESCALATE_AFTER_MS", "2000"},
                                         // Buffers of 128 KiB and more are mapped and given
                                         // back as they are freed, so the server's resident
                                         // memory follows what it holds, not what glibc's
                                         // arenas kept from earlier requests.
                                         {"MALLOC_MMAP_THRESHOLD_", "131072"}}};
  TestAccount owner_, ann_, ben_;
};

TEST_F(MessagingFilesTest, AttachmentsAreSniffedSealedAndServedOnlyToMembersAsDownloads) {
  const std::string c = Group("Ward 5");
  const std::string canary = "canary-attach-51f0 Jane Roe";
  const std::string text = "Discharge summary for " + canary + "\n";

  // Refused: a type off the allow-list (sniffed, whatever the client says),
  // no bytes, a bad name, and a body past the limit (before it is read).
  EXPECT_EQ(Upload(ann_, c, "<html><script>alert(1)</script></html>", "x.txt").status, 415);
  EXPECT_EQ(Upload(ann_, c, "", "x.txt").status, 400);
  EXPECT_EQ(Upload(ann_, c, text, "bad%2Fname%2").status, 400);
  EXPECT_EQ(Upload(ann_, c, text, "a%0Ab").status, 400);
  EXPECT_EQ(Upload(ann_, c, std::string((25 << 20) + 1, 'a'), "big.txt").status, 413);

  const auto up = Upload(ann_, c, text, "Jane%20Roe%20summary.txt");
  ASSERT_EQ(up.status, 201) << up.body;
  const auto att = Parse(up.body);
  EXPECT_EQ(Field(att, "content_type"), "text/plain");
  const std::string id = Field(att, "id");
  // Not yet sent: Ben cannot see it.
  EXPECT_EQ(Call("GET", "/api/v1/attachments/" + id, ben_).status, 404);

  const auto png = Upload(ann_, c, Png(), "");
  ASSERT_EQ(png.status, 201) << png.body;
  EXPECT_EQ(Field(Parse(png.body), "content_type"), "image/png");

  const auto sent =
      SendText(ann_, c, {{"body", ""}, {"attachments", {id, Field(Parse(png.body), "id")}}});
  ASSERT_EQ(sent.status, 201) << sent.body;
  const auto message = Parse(sent.body);
  ASSERT_EQ(message.at("attachments").as_array().size(), 2u);

  const auto got = Call("GET", "/api/v1/attachments/" + id, ben_);
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body, text);
  EXPECT_EQ(got.Header("content-type"), "text/plain");
  EXPECT_EQ(got.Header("x-content-type-options"), "nosniff");
  EXPECT_EQ(got.Header("cache-control"), "no-store");
  EXPECT_EQ(got.Header("content-disposition"),
            "attachment; filename=\"attachment.txt\"; filename*=UTF-8''Jane%20Roe%20summary.txt");

  // Nothing readable at rest, while the server runs.
  EXPECT_EQ(FilesContaining(data(), canary), std::vector<std::string>{});
  EXPECT_EQ(FilesContaining(data(), "Jane Roe summary"), std::vector<std::string>{});

  // The owner recalls it: the files go for everyone.
  ASSERT_EQ(Call("POST", "/api/v1/messages/" + Field(message, "id") + "/recall", owner_).status,
            204);
  EXPECT_EQ(Call("GET", "/api/v1/attachments/" + id, ben_).status, 404);
  Sql db(data() / "carewire.db", false);
  EXPECT_EQ(db.Count("attachment_chunks"), 0);
  EXPECT_EQ(db.Count("audit_events WHERE action = 'attachment.downloaded'"), 1);
}

// Lines of clinical-looking text, `size` bytes long, naming `canary`.
std::string NotesText(const std::string& canary, std::size_t size) {
  std::string text;
  text.reserve(size + 128);
  for (int line = 0; text.size() < size; ++line) {
    text += "Line " + std::to_string(line) + ": wound review for " + canary + "; dressing changed.\n";
  }
  text.resize(size);
  return text;
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// The server's anonymous memory (heap and stacks, not mapped files), in bytes.
std::int64_t RssAnon(pid_t pid) {
  std::istringstream status(ReadFile("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("RssAnon:", 0) == 0) return std::stoll(line.substr(8)) * 1024;
  }
  return -1;
}

std::string UploadHeader(const std::string& conversation, const std::string& token,
                         const std::string& framing) {
  return "POST /api/v1/conversations/" + conversation +
         "/attachments HTTP/1.1\r\nHost: carewire\r\nAuthorization: Bearer " + token +
         "\r\nX-Attachment-Name: notes.txt\r\nContent-Type: application/octet-stream\r\n" +
         framing + "\r\n";
}

// An upload is sealed and stored as its bytes arrive; one cut off midway
// leaves nothing behind but the audit event that says so.
TEST_F(MessagingFilesTest, UploadsAreStoredAsTheyArriveAndOneCutOffLeavesNothing) {
  const std::string c = Group("Wound care");
  const std::string canary = "canary-stream-7c21 Rosa Ramirez";
  const std::string text = NotesText(canary, 6 << 20);
  Sql db(data() / "carewire.db", false);
  {
    HttpsConnection conn(port());
    conn.WriteRaw(UploadHeader(c, ann_.token,
                               "Content-Length: " + std::to_string(text.size()) + "\r\n"));
    conn.WriteRaw(text.substr(0, 3 << 20));
    // Half the body is in: its first rows are stored, sealed, under an
    // attachment no one can see yet.
    EXPECT_TRUE(Eventually([&] {
      return db.Count("attachments WHERE complete = 0") == 1 && db.Count("attachment_chunks") >= 2;
    }));
    EXPECT_EQ(db.Count("attachments WHERE complete = 1"), 0);
    EXPECT_EQ(FilesContaining(data(), canary), std::vector<std::string>{});
  }  // the client goes away with half its file sent
  EXPECT_TRUE(Eventually([&] {
    return db.Count("attachments") == 0 && db.Count("attachment_chunks") == 0;
  })) << db.Count("attachments") << " attachments left";
  EXPECT_TRUE(Eventually(
      [&] { return db.Count("audit_events WHERE action = 'attachment.upload_abandoned'") == 1; }));
  EXPECT_EQ(db.Count("audit_events WHERE action = 'attachment.uploaded'"), 0);

  // A chunked body that runs past the limit is cut off at the limit.
  {
    HttpsConnection conn(port(), {}, 30s);
    conn.WriteRaw(UploadHeader(c, ann_.token, "Transfer-Encoding: chunked\r\n"));
    const std::string piece = NotesText(canary, 1 << 20);
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", piece.size());
    for (int i = 0; i < 26; ++i) conn.WriteRaw(size_line + piece + "\r\n");
    conn.WriteRaw("0\r\n\r\n");
    const auto r = conn.ReadResponse();
    EXPECT_TRUE(IsError(r, 413, "payload_too_large"));
  }
  // A text file that turns binary after its first megabyte is refused.
  std::string disguised = NotesText(canary, 3 << 20);
  disguised[(2 << 20) + 17] = '\0';
  EXPECT_EQ(Upload(ann_, c, disguised, "notes.txt").status, 415);
  EXPECT_TRUE(Eventually([&] {
    return db.Count("attachments") == 0 && db.Count("attachment_chunks") == 0;
  }));
}

// The caller is authenticated and checked before any of the body is read:
// a client that asks first (Expect: 100-continue) is refused without being
// told to send it.
TEST_F(MessagingFilesTest, UploadsAreAuthorizedBeforeTheirBodyIsRead) {
  const std::string c = Group("Ward 9");
  const auto direct = Call("POST", "/api/v1/conversations", owner_,
                           json::serialize(json::object{{"kind", "direct"},
                                                        {"members", {ann_.user_id}}}));
  ASSERT_EQ(direct.status, 201) << direct.body;
  const std::string others = Field(Parse(direct.body), "id");
  const std::string ask = "Expect: 100-continue\r\nContent-Length: 20000000\r\n";
  struct Case {
    std::string conversation, token;
    int status;
  };
  for (const Case& k : {Case{c, "", 401}, Case{c, "not-a-token", 401},
                        Case{others, ben_.token, 404}, Case{"cnv_0", ann_.token, 404}}) {
    HttpsConnection conn(port());
    conn.WriteRaw(UploadHeader(k.conversation, k.token, ask));
    const auto r = conn.ReadResponse();
    EXPECT_EQ(r.status, k.status) << k.conversation << " " << r.body;
    EXPECT_FALSE(r.keep_alive);
  }
  HttpsConnection conn(port());
  const std::string text = "Vitals at 14:00 stable.\n";
  conn.WriteRaw(
      UploadHeader(c, ann_.token,
                   "Expect: 100-continue\r\nContent-Length: " + std::to_string(text.size()) +
                       "\r\n"));
  EXPECT_EQ(conn.ReadResponse().status, 100);
  conn.WriteRaw(text);
  const auto r = conn.ReadResponse();
  EXPECT_EQ(r.status, 201) << r.body;
}

// A 24 MiB file goes up and comes down without the server holding it:
// memory grows by a few pieces, not by the file. A stored chunk that was
// tampered with cuts the download short instead of serving altered bytes.
TEST_F(MessagingFilesTest, LargeAttachmentsStreamThroughFlatServerMemory) {
  const std::string c = Group("Radiology");
  const std::string text = NotesText("canary-large-90aa Ivo Novak", 24 << 20);
  const pid_t server = deployment_.server().pid();
  const std::int64_t before = RssAnon(server);
  ASSERT_GT(before, 0);
  std::atomic<bool> sampling{true};
  std::atomic<std::int64_t> peak{before};
  std::thread sampler([&] {
    while (sampling) {
      peak = std::max(peak.load(), RssAnon(server));
      std::this_thread::sleep_for(2ms);
    }
  });
  const auto up = Upload(ann_, c, text, "scan%20notes.txt");
  std::string id;
  if (up.status == 201) id = Field(Parse(up.body), "id");
  HttpResponse got;
  if (!id.empty()) got = Call("GET", "/api/v1/attachments/" + id, ann_);
  sampling = false;
  sampler.join();
  ASSERT_EQ(up.status, 201) << up.body;
  EXPECT_EQ(Parse(up.body).at("size").as_int64(), 24 << 20);
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.Header("content-length"), std::to_string(24 << 20));
  EXPECT_TRUE(got.body == text) << got.body.size() << " bytes came back";
  RecordProperty("server_memory_growth_bytes", std::to_string(peak - before));
  // Held whole, the file and its sealed copy alone would be 48 MiB. (Under
  // AddressSanitizer freed memory sits in quarantine, so RSS says nothing.)
  if (!kSanitized) {
    EXPECT_LT(peak - before, 16 << 20) << "server memory grew by " << (peak - before) << " bytes";
  }

  {
    Sql db(data() / "carewire.db", true);
    db.Column(
        "UPDATE attachment_chunks SET data = CAST(substr(data, 1, 1000) || "
        "X'00112233445566778899AABBCCDDEEFF' || substr(data, 1017) AS BLOB) "
        "WHERE attachment_id = ? AND n = 3",
        {id});
  }
  HttpsConnection conn(port(), {}, 10s);
  EXPECT_ANY_THROW(conn.Send("GET", "/api/v1/attachments/" + id, "", BearerHeader(ann_.token)));
  // The server goes on.
  EXPECT_EQ(Call("GET", "/api/v1/conversations/" + c, ann_).status, 200);
}

TEST_F(MessagingFilesTest, PushPayloadsCarryNoPhiAndUnreadUrgentMessagesEscalate) {
  const std::string c = Group("Oncology - Jane Roe");
  const std::string canary = "canary-push-8c21 Jane Roe K+ 6.9";
  const auto sent = SendText(ben_, c, {{"body", canary}, {"priority", "urgent"}});
  ASSERT_EQ(sent.status, 201) << sent.body;
  const std::string message_id = Field(Parse(sent.body), "id");
  // Ann reads it; the owner does not. After a second the owner is reminded,
  // after two the owner (the group's admin) gets the escalation.
  ASSERT_EQ(Call("POST", "/api/v1/messages/" + message_id + "/read", ann_).status, 204);
  std::vector<json::object> pushes;
  for (int i = 0; i < 100; ++i) {
    pushes = Pushes();
    if (pushes.size() >= 4) break;
    std::this_thread::sleep_for(100ms);
  }
  std::vector<std::string> kinds;
  for (const auto& p : pushes) {
    const std::string payload = Field(p, "payload");
    kinds.push_back(Field(p, "to") + " " + Field(Parse(payload), "kind"));
    EXPECT_EQ(Field(Parse(payload), "conversation_id"), c);
    for (const std::string& secret :
         {canary, std::string("Jane"), std::string("Oncology"), std::string("ben"),
          std::string("ann"), message_id}) {
      EXPECT_EQ(payload.find(secret), std::string::npos) << secret << " in " << payload;
    }
  }
  // The two of the send in either order, then the follow-ups in order.
  ASSERT_EQ(kinds.size(), 4u);
  std::sort(kinds.begin(), kinds.begin() + 2);
  std::vector<std::string> first = {owner_.user_id + " urgent", ann_.user_id + " urgent"};
  std::sort(first.begin(), first.end());
  EXPECT_EQ(kinds, (std::vector<std::string>{first[0], first[1],
                                             owner_.user_id + " urgent_reminder",
                                             owner_.user_id + " urgent_escalation"}));
  Sql db(data() / "carewire.db", false);
  EXPECT_EQ(db.Count("audit_events WHERE action IN ('message.urgent_reminded', "
                     "'message.urgent_escalated') AND target_id = '" + message_id + "'"),
            2);
}

TEST_F(MessagingFilesTest, DoNotForwardLegalHoldAndLifespansAreEnforced) {
  const std::string from = Group("Ward 6");
  const std::string to = Group("Ward 7");
  const auto marked = SendText(ann_, from, {{"body", "stays here"}, {"do_not_forward", true}});
  ASSERT_EQ(marked.status, 201) << marked.body;
  const auto free = SendText(ann_, from, {{"body", "may travel"}});
  ASSERT_EQ(free.status, 201);
  auto forward = [&](const HttpResponse& m, const std::string& txn) {
    return Call("POST", "/api/v1/messages/" + Field(Parse(m.body), "id") + "/forward", ben_,
                json::serialize(json::object{{"conversation_id", to}, {"client_txn_id", txn}}));
  };
  EXPECT_EQ(forward(marked, "fw-1").status, 403);
  const auto copied = forward(free, "fw-2");
  ASSERT_EQ(copied.status, 201) << copied.body;
  EXPECT_EQ(Field(Parse(copied.body), "forwarded_from"), Field(Parse(free.body), "id"));

  // Legal hold: only with org.manage, after re-authentication; then the
  // sender cannot recall.
  const std::string hold = "/api/v1/conversations/" + from + "/legal-hold";
  EXPECT_EQ(Call("PUT", hold, ann_, R"({"legal_hold":true})").status, 403);
  ASSERT_TRUE(Reauthenticate(owner_));
  ASSERT_EQ(Call("PUT", hold, owner_, R"({"legal_hold":true})").status, 200);
  EXPECT_EQ(
      Call("POST", "/api/v1/messages/" + Field(Parse(free.body), "id") + "/recall", ann_).status,
      409);

  // Lifespan: the organization keeps messages a day; two are backdated two
  // days. The held conversation keeps them; the other loses its copy, and a
  // member's live socket is told.
  WebSocketClient ws(port(), "/api/v1/events");
  ws.SendText(json::serialize(json::object{{"type", "auth"}, {"token", ben_.token}}));
  ASSERT_TRUE(ws.ReadText().has_value());  // ready
  {
    Sql db(data() / "carewire.db", true);
    db.Column("UPDATE organizations SET message_lifespan_days = 1");
    db.Column("UPDATE messages SET created_at = '2000-01-01T00:00:00.000000Z'");
  }
  std::optional<std::string> frame = ws.ReadText();
  ASSERT_TRUE(frame.has_value());
  const auto expired = Parse(*frame);
  EXPECT_EQ(Field(expired, "type"), "message.expired");
  EXPECT_EQ(Field(expired, "message_id"), Field(Parse(copied.body), "id"));
  const auto page = Call("GET", "/api/v1/conversations/" + to + "/messages", ben_);
  ASSERT_EQ(page.status, 200);
  const json::object listed = Parse(page.body);
  const auto& msgs = listed.at("messages").as_array();
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_TRUE(msgs[0].as_object().at("body").is_null());
  EXPECT_TRUE(msgs[0].as_object().at("expired").as_bool());
  const auto held = Call("GET", "/api/v1/conversations/" + from + "/messages", ben_);
  EXPECT_NE(held.body.find("may travel"), std::string::npos);
  Sql db(data() / "carewire.db", false);
  EXPECT_EQ(db.Count("audit_events WHERE action = 'message.purged'"), 1);
  EXPECT_EQ(db.Count("audit_events WHERE action = 'conversation.legal_hold_set'"), 1);
}

// QUALITY.md's bad inputs on the routes of this file: each is refused with a
// 4xx error envelope and stores nothing. Markup and SQL metacharacters in a
// message are text: stored and answered exactly, as JSON, never run.
TEST_F(MessagingFilesTest, BadInputsAreRefusedAndStoreNothing) {
  const std::string c = Group("Ward 8");
  const auto first = SendText(ann_, c, {{"body", "first"}});
  ASSERT_EQ(first.status, 201);
  const std::string message = Field(Parse(first.body), "id");
  ASSERT_TRUE(Reauthenticate(owner_));
  Sql db(data() / "carewire.db", false);
  auto counts = [&] {
    return std::vector<std::int64_t>{
        db.Count("messages"), db.Count("attachments"), db.Count("conversations"),
        db.Count("conversation_events"),
        db.Count("audit_events WHERE action != 'access.denied'"),
        db.Count("conversations WHERE legal_hold = 1 OR message_lifespan_days IS NOT NULL")};
  };
  const auto before = counts();

  struct Case {
    std::string method, target, body;
    const TestAccount* who;
    Headers headers;
  };
  const std::string patch = "/api/v1/conversations/" + c;
  const std::string hold = patch + "/legal-hold";
  const std::string forward = "/api/v1/messages/" + message + "/forward";
  const std::string upload = patch + "/attachments";
  const std::string deep = std::string(10000, '[') + std::string(10000, ']');
  std::vector<Case> cases;
  for (const std::string& body :
       {std::string(""), std::string("null"), std::string("[]"), std::string("{}"),
        std::string(R"({"title":5})"), std::string(R"({"message_lifespan_days":0})"),
        std::string(R"({"message_lifespan_days":-1})"),
        std::string(R"({"message_lifespan_days":2147483648})"),
        std::string(R"({"message_lifespan_days":9007199254740993})"),
        std::string(R"({"message_lifespan_days":1e3})"),
        std::string(R"({"message_lifespan_days":"NaN"})"),
        std::string(R"({"title":"a","title":"b"})"), std::string(R"({"title":"\u202Eevil"})"),
        std::string(R"({"title":"x\u0000y"})"), std::string(R"({"title":"a\nb"})"),
        std::string(R"({"title":""})"), std::string(R"({"colour":"red"})"), deep,
        std::string("{\"title\":\"\xff\xfe\"}"), std::string(R"({"title":"\ud800"})")}) {
    cases.push_back({"PATCH", patch, body, &owner_, {}});
  }
  for (const std::string& body :
       {std::string(""), std::string("null"), std::string(R"({"legal_hold":"true"})"),
        std::string(R"({"legal_hold":1})"), std::string(R"({"legal_hold":true,"x":1})"),
        std::string(R"({"legal_hold":true,"legal_hold":false})")}) {
    cases.push_back({"PUT", hold, body, &owner_, {}});
  }
  for (const std::string& body :
       {std::string("{}"), std::string(R"({"conversation_id":"../../etc","client_txn_id":"a"})"),
        std::string(R"({"conversation_id":"cnv_00000000000000000000000000000000","client_txn_id":"a"})"),
        std::string(R"({"conversation_id":")" + c + R"(","client_txn_id":"' OR 1=1;--"})"),
        std::string(R"({"conversation_id":")" + c + R"(","client_txn_id":"${x}{{y}}%n"})"),
        std::string(R"({"conversation_id":5,"client_txn_id":"a"})")}) {
    cases.push_back({"POST", forward, body, &ann_, {}});
  }
  cases.push_back({"POST", "/api/v1/messages/msg_..%2f..%2fetc/forward", "{}", &ann_, {}});
  cases.push_back({"POST", "/api/v1/conversations/" + c + "/messages",
                   R"({"client_txn_id":"bidi","body":"scan\u202Efdp.exe"})", &ann_, {}});
  cases.push_back({"POST", "/api/v1/conversations/" + c + "/messages",
                   R"({"client_txn_id":"vt","body":"a\u000bb\u001cc"})", &ann_, {}});
  for (const std::string& name : {std::string("..%2F..%2Fetc%2Fpasswd"), std::string("%00"),
                                  std::string("%E2%80%AEgpj.exe"), std::string("%ZZ"),
                                  std::string("%C3%28")}) {
    cases.push_back({"POST", upload, "plain text\n", &ann_,
                     {{"Content-Type", "text/plain"}, {"X-Attachment-Name", name}}});
  }
  cases.push_back({"POST", upload, std::string(10 << 20, '\0'), &ann_,
                   {{"Content-Type", "image/png"}, {"X-Attachment-Name", "zeros.png"}}});
  cases.push_back({"POST", upload, "<svg onload=alert(1)></svg>", &ann_,
                   {{"Content-Type", "image/png"}, {"X-Attachment-Name", "x.png"}}});
  cases.push_back({"POST", "/api/v1/conversations/cnv_00000000000000000000000000000000/attachments",
                   "plain text\n", &ann_, {{"Content-Type", "text/plain"}}});
  cases.push_back({"GET", "/api/v1/attachments/att_00000000000000000000000000000000", "", &ann_, {}});
  cases.push_back({"GET", "/api/v1/attachments/../../etc/passwd", "", &ann_, {}});

  for (const Case& k : cases) {
    const auto r = Call(k.method, k.target, *k.who, k.body, k.headers);
    const std::string what = k.method + " " + k.target + " " + k.body.substr(0, 80);
    EXPECT_GE(r.status, 400) << what << " -> " << r.status << " " << r.body.substr(0, 200);
    EXPECT_LT(r.status, 500) << what << " -> " << r.status << " " << r.body.substr(0, 200);
    const auto error = Parse(r.body);
    EXPECT_TRUE(error.contains("error")) << what << " -> " << r.body.substr(0, 200);
  }
  EXPECT_EQ(counts(), before);

  // Markup, SQL and template text in a message is text.
  const std::string inert = "<script>alert(1)</script> <svg onload=x> javascript:x ' \";-- ${x} {{y}} %n | ^ ~ \\ &";
  const auto sent = SendText(ann_, c, {{"body", inert}});
  ASSERT_EQ(sent.status, 201) << sent.body;
  EXPECT_EQ(sent.Header("content-type"), "application/json; charset=utf-8");
  EXPECT_EQ(Field(Parse(sent.body), "body"), inert);
}

}  // namespace
}  // namespace cw::testing
