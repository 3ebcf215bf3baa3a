-- Imports (onemap import): one row per committed import, and the keys it wrote, so a running
-- server can pick up exactly those rows (it polls for sequence numbers it has not seen). Keys
-- of old imports are pruned; a server started later loads everything anyway.
CREATE TABLE imports (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    features INTEGER NOT NULL,
    source TEXT NOT NULL,
    at DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE TABLE import_keys (
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (seq, key)
) WITHOUT ROWID;

INSERT INTO gpkg_contents (table_name, data_type, identifier, description) VALUES
 ('imports', 'attributes', 'imports', '数据导入 imports');
