-- Fewer B-trees per paid request, for fewer pages per commit. A request's
-- voucher row is written once, at admission, compactly (addresses, digests
-- and signatures as bytes), keyed by its id: `seq` is the id's time half
-- (unique within a broker process), `tag` its random half. How it ended
-- (charged with its receipt, failed, or an acknowledgement) goes to
-- `outcomes`, appended once, instead of updating the request's row and two
-- indexes. A request without an outcome is in flight. Requests from before
-- this version are numbered in id order and keep their id in `legacy_id`.
CREATE TABLE requests_v3 (
    seq            INTEGER PRIMARY KEY,
    tag            INTEGER NOT NULL,
    legacy_id      BLOB,
    user_addr      BLOB NOT NULL,
    request_digest BLOB NOT NULL,
    service        TEXT NOT NULL,
    cumulative     TEXT NOT NULL,
    signature      BLOB NOT NULL,
    worst          TEXT NOT NULL,
    replica        TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    UNIQUE (user_addr, request_digest)
);

-- state: charged (receipt and its EIP-712 hash, which acknowledgement
-- vouchers name), failed (free) or ack.
CREATE TABLE outcomes (
    request      INTEGER PRIMARY KEY,
    state        TEXT NOT NULL,
    fee          TEXT NOT NULL,
    receipt_hash BLOB,
    receipt      TEXT
);
CREATE INDEX outcomes_by_receipt ON outcomes (receipt_hash) WHERE receipt_hash IS NOT NULL;

-- Per replica, the newest request already looked at by a start's release
-- of abandoned requests: the next start looks only after it.
CREATE TABLE release_marks (
    replica TEXT PRIMARY KEY,
    seq     INTEGER NOT NULL
);

INSERT INTO requests_v3 (tag, legacy_id, user_addr, request_digest, service, cumulative,
                         signature, worst, replica, created_at)
SELECT 0, CAST(id AS BLOB), unhex(substr(user_addr, 3)),
       unhex(substr(request_digest, 3)), service, cumulative, unhex(substr(signature, 3)),
       worst, replica, created_at
FROM requests ORDER BY id;

INSERT INTO outcomes (request, state, fee, receipt_hash, receipt)
SELECT n.seq, o.state, coalesce(o.fee, '0'), unhex(substr(o.receipt_hash, 3)), o.receipt
FROM requests o JOIN requests_v3 n ON n.legacy_id = CAST(o.id AS BLOB)
WHERE o.state <> 'admitted';

DROP TABLE requests;
ALTER TABLE requests_v3 RENAME TO requests;
CREATE INDEX requests_legacy ON requests (legacy_id) WHERE legacy_id IS NOT NULL;
