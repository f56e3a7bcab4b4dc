//! The PostgreSQL layout of the token store: component `auth` in
//! `cds_events_schema`, its tables prefixed `auth_` (the database is shared
//! with the log and the webhooks store).

use cds_events_store::pg::PgSchema;

pub(super) const LAYOUT: PgSchema = PgSchema {
    component: "auth",
    create: CREATE,
    version: 1,
    migrations: &[],
};

/// `auth_version` is one row whose number every transaction that changes
/// the tokens raises first: taking its lock orders those transactions (so
/// that "is this store empty?" and the first insert are one step, see
/// `insert_first_token`), and the number tells a polling instance that
/// something changed, in commit order, which a sequence would not.
const CREATE: &str = "
CREATE TABLE auth_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    grants JSONB NOT NULL,
    hash BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ,
    created_by TEXT,
    revoked_at TIMESTAMPTZ
);
CREATE TABLE auth_audit (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at TIMESTAMPTZ NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail JSONB NOT NULL
);
CREATE TABLE auth_tickets (
    hash BYTEA PRIMARY KEY,
    token_id TEXT NOT NULL REFERENCES auth_tokens (id),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX auth_tickets_token ON auth_tickets (token_id);
CREATE INDEX auth_tickets_expiry ON auth_tickets (expires_at);
CREATE TABLE auth_version (
    one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (one),
    version BIGINT NOT NULL
);
INSERT INTO auth_version (version) VALUES (0);
";
