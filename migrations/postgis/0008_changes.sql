-- The change log: one row per committed change, numbered densely in commit order (max + 1 while
-- holding a transaction-level advisory lock up to the commit, so a follower reading seq > n never
-- misses a number that commits later). Every process follows it; the live feed's event ids are
-- its numbers.
CREATE TABLE changes (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    collection TEXT NOT NULL,
    key TEXT,
    op TEXT NOT NULL,
    event TEXT,
    data TEXT,
    bbox TEXT
);
CREATE INDEX changes_at ON changes (at_ms);
