-- 一键联动 (joint response): cameras (视频监控) as a feature layer; emergency plans (预案), one row
-- per version so a change never alters an incident started from an earlier one; incidents, whose
-- tasks and outside-system deliveries live in `state` (one JSON document, replaced as a whole
-- under the `version` guard). At most one open incident per automatic trigger (`auto_key`, the
-- sensor), whichever process starts it.
CREATE TABLE cameras (
    fid INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    stream_url TEXT,
    direction DOUBLE,
    grid_code TEXT,
    geom POINT NOT NULL
);
CREATE TABLE plans (
    code TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at DATETIME NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (code, version)
);
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    plan_code TEXT NOT NULL,
    plan_version INTEGER NOT NULL,
    status TEXT NOT NULL,
    auto_key TEXT,
    alarm_id TEXT,
    case_id TEXT,
    lon DOUBLE NOT NULL,
    lat DOUBLE NOT NULL,
    opened_at DATETIME NOT NULL,
    closed_at DATETIME,
    pending INTEGER NOT NULL,
    version INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE UNIQUE INDEX incidents_one_open ON incidents (auto_key) WHERE status = 'open';
CREATE INDEX incidents_status ON incidents (status);
CREATE INDEX incidents_pending ON incidents (pending);
CREATE INDEX incidents_alarm ON incidents (alarm_id);

INSERT INTO gpkg_contents (table_name, data_type, identifier, description, srs_id) VALUES
 ('cameras', 'features', 'cameras', '视频监控 cameras', 4490);
INSERT INTO gpkg_geometry_columns VALUES ('cameras', 'geom', 'POINT', 4490, 0, 0);
INSERT INTO gpkg_contents (table_name, data_type, identifier, description) VALUES
 ('plans', 'attributes', 'plans', '应急预案 emergency plans'),
 ('incidents', 'attributes', 'incidents', '联动事件 joint incidents');
