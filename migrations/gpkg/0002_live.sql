-- Live writes: case deadlines, the append-only case history, and API bearer tokens stored as
-- SHA-256 hashes. The history is a registered attribute table so QGIS lists it; the tokens are
-- deliberately not registered.
ALTER TABLE cases ADD COLUMN deadline_at DATETIME;

CREATE TABLE case_steps (
    fid INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    dept_code TEXT,
    status_from TEXT,
    status_to TEXT NOT NULL,
    at DATETIME NOT NULL,
    note TEXT,
    UNIQUE (case_id, seq)
);
INSERT INTO gpkg_contents (table_name, data_type, identifier, description, srs_id) VALUES
 ('case_steps', 'attributes', 'case_steps', '案件流程 case history', NULL);

CREATE TABLE api_tokens (
    hash TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    dept_code TEXT,
    label TEXT,
    created_at DATETIME NOT NULL
);
