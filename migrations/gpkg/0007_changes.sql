-- The change log: one row per committed change, numbered densely in commit order (max + 1 under
-- SQLite's single writer). Every process follows it; the live feed's event ids are its numbers.
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    collection TEXT NOT NULL,
    key TEXT,
    op TEXT NOT NULL,
    event TEXT,
    data TEXT,
    bbox TEXT
);
CREATE INDEX changes_at ON changes (at_ms);

INSERT INTO gpkg_contents (table_name, data_type, identifier, description) VALUES
 ('changes', 'attributes', 'changes', '变更日志 change log');
