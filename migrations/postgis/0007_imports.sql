-- Imports (onemap import): one row per committed import, and the keys it wrote, so a running
-- server can pick up exactly those rows (it polls for sequence numbers it has not seen). Keys
-- of old imports are pruned; a server started later loads everything anyway.
CREATE TABLE imports (
    seq BIGSERIAL PRIMARY KEY,
    collection TEXT NOT NULL,
    features BIGINT NOT NULL,
    source TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE import_keys (
    seq BIGINT NOT NULL REFERENCES imports (seq) ON DELETE CASCADE,
    key TEXT NOT NULL,
    PRIMARY KEY (seq, key)
);
