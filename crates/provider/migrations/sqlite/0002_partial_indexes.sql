-- Index only what is looked up: requests still in flight (released after a
-- crash) and requests with a receipt (acknowledgement vouchers). Every
-- commit then writes fewer index pages.
DROP INDEX IF EXISTS requests_state;
CREATE INDEX IF NOT EXISTS requests_admitted ON requests (replica) WHERE state = 'admitted';
DROP INDEX IF EXISTS requests_receipt;
CREATE INDEX IF NOT EXISTS requests_receipt ON requests (user_addr, receipt_hash) WHERE receipt_hash IS NOT NULL;
