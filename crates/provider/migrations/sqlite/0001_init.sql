-- IF NOT EXISTS: brokers before PRAGMA user_version (they migrated with sqlx)
-- already have these tables; running this again on their files is harmless.
-- One row per user: what they owe, what is in flight, their newest voucher,
-- and their settled total on chain as last seen. Amounts are decimal text.
CREATE TABLE IF NOT EXISTS accounts (
    user_addr      TEXT PRIMARY KEY,
    owed           TEXT NOT NULL,
    reserved       TEXT NOT NULL,
    settled        TEXT NOT NULL,
    cumulative     TEXT,
    request_digest TEXT,
    signature      TEXT,
    updated_at     BIGINT NOT NULL
);

-- Every accepted voucher (requests and acknowledgements): (user, digest) is
-- unique, which is what refuses a replay. A request's charge and receipt
-- land in its row.
CREATE TABLE IF NOT EXISTS requests (
    id             TEXT PRIMARY KEY,
    user_addr      TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    service        TEXT NOT NULL,
    cumulative     TEXT NOT NULL,
    signature      TEXT NOT NULL,
    worst          TEXT NOT NULL,
    state          TEXT NOT NULL,
    replica        TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    fee            TEXT,
    receipt        TEXT,
    receipt_hash   TEXT,
    UNIQUE (user_addr, request_digest)
);

CREATE INDEX IF NOT EXISTS requests_receipt ON requests (user_addr, receipt_hash);
CREATE INDEX IF NOT EXISTS requests_state ON requests (state, replica);
