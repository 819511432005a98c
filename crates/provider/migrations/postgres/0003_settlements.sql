-- Every final settlement, for the provider page's history: its transaction,
-- the block that mined it, when it became final, the users it settled
-- (0x addresses separated by spaces), how many vouchers the contract
-- rejected, and what it paid (decimal neuron).
CREATE TABLE settlements (
    tx_hash  TEXT PRIMARY KEY,
    block    BIGINT NOT NULL,
    final_at BIGINT NOT NULL,
    users    TEXT NOT NULL,
    rejected BIGINT NOT NULL,
    paid     TEXT NOT NULL
);
CREATE INDEX settlements_by_time ON settlements (final_at);
