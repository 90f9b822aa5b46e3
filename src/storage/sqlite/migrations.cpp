#include "storage/sqlite/migrations.hpp"

namespace cw::storage::sqlite {
namespace {

// APPEND-ONLY. A migration that has shipped is never edited, reordered or
// removed: databases in the field are at its version already and would never
// see the change. To alter the schema, add a new migration at the end with
// the next version number. Each one runs in its own transaction together with
// the user_version bump, so a crash leaves a database at a whole version.
//
// Tables are STRICT, so a value of the wrong type is refused rather than
// silently stored.
constexpr Migration kMigrations[] = {
    {1, "write_probes", R"sql(
      -- One row per diagnostics probe: the route commits a row durably to
      -- prove the write path (group commit, fsync) works end to end; the
      -- padding stands in for a message body of a chosen size.
      CREATE TABLE write_probes (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        padding BLOB NOT NULL DEFAULT x''
      ) STRICT;
    )sql"},
    {2, "organizations, keys, users, audit log", R"sql(
      -- The deployment itself: one row. Its Ed25519 key signs audit
      -- checkpoints; the private seed is stored wrapped by the master key.
      CREATE TABLE deployment (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        created_at TEXT NOT NULL,
        audit_signing_public_key BLOB NOT NULL,
        audit_signing_key_wrapped BLOB NOT NULL
      ) STRICT;

      CREATE TABLE organizations (
        id TEXT PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
        created_at TEXT NOT NULL
      ) STRICT;

      -- Each organization's keys, wrapped by the master key (whose version
      -- is kek_version). 'data' keys seal PHI: the highest version seals new
      -- values and every version opens. The 'blind_index' key keys the
      -- hashes that find a value without its plaintext.
      CREATE TABLE org_keys (
        org_id TEXT NOT NULL REFERENCES organizations(id),
        purpose TEXT NOT NULL CHECK (purpose IN ('data', 'blind_index')),
        version INTEGER NOT NULL CHECK (version > 0),
        wrapped BLOB NOT NULL,
        kek_version INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (org_id, purpose, version)
      ) STRICT;

      CREATE TABLE users (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL REFERENCES organizations(id),
        username TEXT NOT NULL,
        display_name TEXT NOT NULL,
        roles TEXT NOT NULL,                    -- JSON array of role names
        password_hash TEXT NOT NULL,            -- Argon2id, libsodium's encoded form
        password_temporary INTEGER NOT NULL,    -- 1: a one-time password to replace
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deactivated')),
        created_at TEXT NOT NULL,
        UNIQUE (org_id, username)
      ) STRICT;

      -- The audit log: one append-only sequence for the deployment. Each
      -- row's hash is SHA-256(previous row's hash || the row's canonical
      -- form); see src/audit/. Never message content, never a secret.
      CREATE TABLE audit_events (
        seq INTEGER PRIMARY KEY,
        occurred_at TEXT NOT NULL,
        org_id TEXT,
        -- (Checks written with OR rather than IN: SQLite 3.40 evaluates an
        -- IN list per row at several times the cost, on the hottest insert.)
        actor_type TEXT NOT NULL CHECK (actor_type = 'user' OR actor_type = 'device' OR
                                        actor_type = 'patient' OR actor_type = 'system'),
        actor_id TEXT,
        action TEXT NOT NULL,
        target_type TEXT,
        target_id TEXT,
        patient_id TEXT,
        outcome TEXT NOT NULL CHECK (outcome = 'success' OR outcome = 'failure' OR
                                     outcome = 'denied'),
        source_address TEXT,
        request_id TEXT,
        details TEXT,
        hash BLOB NOT NULL
      ) STRICT;
      CREATE INDEX audit_events_by_org_time ON audit_events (org_id, occurred_at);
      CREATE INDEX audit_events_by_time ON audit_events (occurred_at);
      -- The accounting of disclosures asks "who saw this patient's data":
      -- partial, so the many events without a patient cost nothing.
      CREATE INDEX audit_events_by_patient ON audit_events (patient_id, seq)
        WHERE patient_id IS NOT NULL;

      -- Append-only for the application: a bug cannot rewrite history. (The
      -- hash chain and the signed checkpoints detect anyone who goes around
      -- this with direct access to the file.)
      CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
      BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
      CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
      BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;

      -- Sealed diagnostics values: the sealed-probe route stores a value
      -- sealed for an organization, so the seal, store, audit and key
      -- rotation path can be exercised and measured before real PHI exists.
      CREATE TABLE sealed_probes (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL REFERENCES organizations(id),
        value BLOB NOT NULL,
        created_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX sealed_probes_by_org ON sealed_probes (org_id, id);

      -- A data-key version added by `carewire keys rotate`, until the
      -- background job has re-sealed every older value of the organization
      -- under it. The cursor (a sealed table and the last row id done)
      -- advances in the same transaction as each batch, so a restart resumes.
      CREATE TABLE key_rotations (
        org_id TEXT NOT NULL REFERENCES organizations(id),
        version INTEGER NOT NULL,
        started_at TEXT NOT NULL,
        finished_at TEXT,
        cursor_table TEXT,
        cursor_id TEXT,
        resealed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (org_id, version)
      ) STRICT;
    )sql"},
    {3, "sessions", R"sql(
      -- Signed-in sessions. The bearer token itself is never stored: only
      -- its SHA-256, so a copy of the database signs no one in. A session of
      -- scope 'password_change' (from a one-time password) may only set a
      -- new password.
      CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        token_hash BLOB NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users(id),
        org_id TEXT NOT NULL REFERENCES organizations(id),
        scope TEXT NOT NULL CHECK (scope IN ('full', 'password_change')),
        created_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked_at TEXT
      ) STRICT;
      CREATE INDEX sessions_by_user ON sessions (user_id);
    )sql"},
    {4, "identity and access", R"sql(
      -- Organization settings, each with the default a new organization gets.
      ALTER TABLE organizations ADD COLUMN mfa_required INTEGER NOT NULL DEFAULT 1
        CHECK (mfa_required IN (0, 1));
      ALTER TABLE organizations ADD COLUMN idle_timeout_minutes INTEGER NOT NULL DEFAULT 15
        CHECK (idle_timeout_minutes BETWEEN 1 AND 240);
      ALTER TABLE organizations ADD COLUMN absolute_timeout_hours INTEGER NOT NULL DEFAULT 12
        CHECK (absolute_timeout_hours BETWEEN 1 AND 72);
      -- NULL: messages are kept until deleted by policy elsewhere.
      ALTER TABLE organizations ADD COLUMN message_lifespan_days INTEGER
        CHECK (message_lifespan_days IS NULL OR message_lifespan_days BETWEEN 1 AND 36500);
      -- Accounts without a sign-in for this many days are deactivated; 0: never.
      ALTER TABLE organizations ADD COLUMN dormant_after_days INTEGER NOT NULL DEFAULT 90
        CHECK (dormant_after_days BETWEEN 0 AND 3650);
      ALTER TABLE organizations ADD COLUMN break_glass_minutes INTEGER NOT NULL DEFAULT 60
        CHECK (break_glass_minutes BETWEEN 5 AND 480);

      ALTER TABLE users ADD COLUMN created_by TEXT;
      ALTER TABLE users ADD COLUMN last_sign_in_at TEXT;
      ALTER TABLE users ADD COLUMN password_changed_at TEXT;
      ALTER TABLE users ADD COLUMN deactivated_at TEXT;
      ALTER TABLE users ADD COLUMN reactivated_at TEXT;
      ALTER TABLE users ADD COLUMN deactivation_reason TEXT
        CHECK (deactivation_reason IS NULL OR deactivation_reason IN ('admin', 'dormant'));
      -- The last sign-in of users who already had sessions, so the dormant
      -- accounts job does not take everyone created long ago for dormant.
      UPDATE users SET last_sign_in_at =
        (SELECT max(s.created_at) FROM sessions s WHERE s.user_id = users.id);

      -- Sessions gain a third scope (MFA enrolment only), the time of the
      -- last password check (for sensitive actions), why they ended, and
      -- where they came from (for the list of one's own sessions). SQLite
      -- cannot alter a CHECK, so the table is rebuilt.
      CREATE TABLE sessions_v4 (
        id TEXT PRIMARY KEY,
        token_hash BLOB NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users(id),
        org_id TEXT NOT NULL REFERENCES organizations(id),
        scope TEXT NOT NULL CHECK (scope IN ('full', 'password_change', 'mfa_enrollment')),
        created_at TEXT NOT NULL,
        last_used_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        revoked_at TEXT,
        revoked_reason TEXT,
        reauthenticated_at TEXT NOT NULL,
        source_address TEXT NOT NULL DEFAULT '',
        user_agent TEXT NOT NULL DEFAULT ''
      ) STRICT;
      INSERT INTO sessions_v4 (id, token_hash, user_id, org_id, scope, created_at,
                               last_used_at, expires_at, revoked_at, reauthenticated_at)
        SELECT id, token_hash, user_id, org_id, scope, created_at, last_used_at, expires_at,
               revoked_at, created_at FROM sessions;
      DROP TABLE sessions;
      ALTER TABLE sessions_v4 RENAME TO sessions;
      CREATE INDEX sessions_by_user ON sessions (user_id);
      -- Live WebSockets are closed when their session ends: the server polls
      -- for sessions revoked since its last look.
      CREATE INDEX sessions_by_revocation ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

      -- Second factors. A TOTP secret is sealed with the organization's data
      -- key; it is 'pending' from enrolment until a first code confirms it,
      -- through the session that started it and within minutes.
      -- last_step is the last time step accepted, so no code works twice.
      CREATE TABLE mfa_factors (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL REFERENCES organizations(id),
        user_id TEXT NOT NULL REFERENCES users(id),
        session_id TEXT,                        -- the session that started the enrolment
        kind TEXT NOT NULL CHECK (kind = 'totp'),
        status TEXT NOT NULL CHECK (status IN ('pending', 'active', 'removed')),
        secret BLOB NOT NULL,
        last_step INTEGER NOT NULL DEFAULT -1,
        created_at TEXT NOT NULL,
        confirmed_at TEXT
      ) STRICT;
      CREATE INDEX mfa_factors_by_user ON mfa_factors (user_id, status);

      -- Single-use recovery codes, as SHA-256 hashes.
      CREATE TABLE recovery_codes (
        user_id TEXT NOT NULL REFERENCES users(id),
        code_hash TEXT NOT NULL,
        created_at TEXT NOT NULL,
        used_at TEXT,
        PRIMARY KEY (user_id, code_hash)
      ) STRICT;

      -- The second step of a sign-in with MFA: the password was right; a
      -- code (or recovery code) must follow within minutes, with few tries.
      CREATE TABLE mfa_challenges (
        id TEXT PRIMARY KEY,
        token_hash BLOB NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users(id),
        org_id TEXT NOT NULL REFERENCES organizations(id),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        used_at TEXT,
        source_address TEXT NOT NULL DEFAULT '',
        user_agent TEXT NOT NULL DEFAULT ''
      ) STRICT;

      -- An organization's own roles: a name and the permissions it grants,
      -- space-separated permission names.
      CREATE TABLE org_roles (
        org_id TEXT NOT NULL REFERENCES organizations(id),
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        permissions TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (org_id, name)
      ) STRICT;

      -- Emergency (break-glass) access: who, why (sealed: a reason may name
      -- a patient), and until when. It ends by itself at expires_at.
      CREATE TABLE break_glass (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL REFERENCES organizations(id),
        user_id TEXT NOT NULL REFERENCES users(id),
        reason BLOB NOT NULL,
        started_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        ended_at TEXT
      ) STRICT;
      CREATE INDEX break_glass_by_user ON break_glass (user_id, expires_at);
      CREATE INDEX break_glass_by_org ON break_glass (org_id, started_at);

      -- Security alerts for the privacy officers (break-glass use, lockouts).
      -- Never PHI: a kind, who, and what, by id.
      CREATE TABLE alerts (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL REFERENCES organizations(id),
        recipient_id TEXT NOT NULL REFERENCES users(id),  -- each privacy officer has their own
        kind TEXT NOT NULL,
        user_id TEXT,
        target_type TEXT,
        target_id TEXT,
        created_at TEXT NOT NULL,
        acknowledged_at TEXT,
        acknowledged_by TEXT
      ) STRICT;
      CREATE INDEX alerts_by_recipient ON alerts (recipient_id, created_at);
    )sql"},
    {5, "secure messaging", R"sql(
      -- New messages are marked "do not forward" unless the sender says
      -- otherwise.
      ALTER TABLE organizations ADD COLUMN do_not_forward_default INTEGER NOT NULL DEFAULT 0
        CHECK (do_not_forward_default IN (0, 1));

      -- Conversations: direct (one per pair of users, found through
      -- direct_key, the two user ids in order) or group (a title, admins).
      -- last_seq is the seq of the newest message: a send raises it by one in
      -- the same transaction as its insert, so seq has no gaps.
      CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL REFERENCES organizations(id),
        kind TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
        title TEXT,
        direct_key TEXT,
        created_by TEXT NOT NULL REFERENCES users(id),
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        last_seq INTEGER NOT NULL DEFAULT 0,
        legal_hold INTEGER NOT NULL DEFAULT 0 CHECK (legal_hold IN (0, 1)),
        message_lifespan_days INTEGER
          CHECK (message_lifespan_days IS NULL OR message_lifespan_days BETWEEN 1 AND 36500),
        UNIQUE (org_id, direct_key)
      ) STRICT;

      -- Current members. joined_event is the event that added them: the
      -- event stream shows a member the conversation's events from there on.
      CREATE TABLE conversation_members (
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        user_id TEXT NOT NULL REFERENCES users(id),
        role TEXT NOT NULL CHECK (role IN ('admin', 'member')),
        added_at TEXT NOT NULL,
        joined_event INTEGER NOT NULL,
        PRIMARY KEY (conversation_id, user_id)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX conversation_members_by_user ON conversation_members (user_id, conversation_id);

      -- Messages. body is sealed (organization, table, column and id bound)
      -- and NULL once recalled or purged; the row stays as a tombstone.
      -- client_txn_id makes a sender's retries idempotent.
      CREATE TABLE messages (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL REFERENCES organizations(id),
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        seq INTEGER NOT NULL,
        sender_id TEXT NOT NULL REFERENCES users(id),
        client_txn_id TEXT NOT NULL,
        body BLOB,
        priority TEXT NOT NULL CHECK (priority IN ('routine', 'urgent')),
        reply_to TEXT,
        do_not_forward INTEGER NOT NULL DEFAULT 0 CHECK (do_not_forward IN (0, 1)),
        forwarded_from TEXT,
        created_at TEXT NOT NULL,
        recalled_at TEXT,
        recalled_by TEXT,
        purged_at TEXT,           -- its lifespan ended: body and attachments destroyed
        reminded_at TEXT,         -- urgent and unread: members were notified again
        escalated_at TEXT,        -- urgent and unread: the conversation's admins were told
        UNIQUE (conversation_id, seq),
        UNIQUE (sender_id, client_txn_id)
      ) STRICT;
      CREATE INDEX messages_by_conversation_time ON messages (conversation_id, created_at);
      -- Urgent messages still to be followed up.
      CREATE INDEX messages_urgent_open ON messages (priority, escalated_at, created_at);

      -- Files sent with messages. Uploaded first (message_id NULL, the
      -- uploader's alone), then carried by one message. The content is one
      -- chunked sealed stream (crypto/sealed_stream.hpp) stored in rows of
      -- attachment_chunks; the name is sealed too. Recall and purge delete
      -- the chunks and keep the row.
      CREATE TABLE attachments (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL REFERENCES organizations(id),
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        uploader_id TEXT NOT NULL REFERENCES users(id),
        message_id TEXT REFERENCES messages(id),
        content_type TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        name BLOB,
        created_at TEXT NOT NULL,
        destroyed_at TEXT
      ) STRICT;
      CREATE INDEX attachments_by_message ON attachments (message_id);
      CREATE INDEX attachments_unsent ON attachments (message_id, created_at);
      CREATE TABLE attachment_chunks (
        attachment_id TEXT NOT NULL REFERENCES attachments(id),
        n INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (attachment_id, n)
      ) STRICT, WITHOUT ROWID;

      -- Per member other than the sender: when a message reached them and
      -- when they marked it read.
      CREATE TABLE message_receipts (
        message_id TEXT NOT NULL REFERENCES messages(id),
        user_id TEXT NOT NULL REFERENCES users(id),
        delivered_at TEXT,
        read_at TEXT,
        PRIMARY KEY (message_id, user_id)
      ) STRICT, WITHOUT ROWID;

      -- The event stream's log. id is the cursor: it only grows, across
      -- restarts (AUTOINCREMENT never reuses an id). recipient_id NULL: for
      -- every member; else for that user alone (receipts go to the sender, a
      -- removal to the removed member). Events hold ids, never content.
      CREATE TABLE conversation_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        org_id TEXT NOT NULL REFERENCES organizations(id),
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        type TEXT NOT NULL CHECK (type IN ('message.created', 'message.recalled',
                                           'message.expired', 'receipt',
                                           'conversation.updated', 'conversation.removed')),
        message_id TEXT,
        user_id TEXT,
        status TEXT,
        recipient_id TEXT,
        created_at TEXT NOT NULL
      ) STRICT;
      CREATE INDEX conversation_events_by_org ON conversation_events (org_id, id);
    )sql"},
    {6, "streamed attachment uploads", R"sql(
      -- An upload is stored chunk by chunk as its bytes arrive; until its
      -- last chunk is written it is incomplete (0), seen by no one and
      -- carried by no message. Uploads cut off by a crash are swept by the
      -- messaging jobs. Every attachment stored before was complete.
      ALTER TABLE attachments ADD COLUMN complete INTEGER NOT NULL DEFAULT 1
        CHECK (complete IN (0, 1));
    )sql"},
};

constexpr bool VersionsAreContiguous() {
  int expected = 1;
  for (const Migration& m : kMigrations) {
    if (m.version != expected++) return false;
  }
  return true;
}
static_assert(VersionsAreContiguous(), "migration versions must be 1, 2, 3... in order");

}  // namespace

std::span<const Migration> Migrations() { return kMigrations; }

}  // namespace cw::storage::sqlite
