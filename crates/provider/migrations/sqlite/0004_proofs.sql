-- The proof of model of a charged answer, kept with its receipt (which
-- binds its keccak256 as proofDigest) and served at GET /v1/proofs/{id}.
-- NULL where the upstream gives none.
ALTER TABLE outcomes ADD COLUMN proof BLOB;
