-- Field staff (监督员, 信息采集员, a department's 处置人员): the registry as a feature table (its
-- point is where a member was registered; the live position comes from the tracks), the tracks
-- themselves (time as integer milliseconds since 1970 UTC, keyed by member and time so a
-- repeated position drops out and one member's day is one range read), and the patrol tallies
-- each positions batch adds to, per city day, so coverage reports never scan the tracks.
CREATE TABLE staff (
    fid INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    dept_code TEXT,
    community_code TEXT,
    grids TEXT,
    geom POINT NOT NULL
);
CREATE TABLE staff_positions (
    staff_code TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    lon DOUBLE NOT NULL,
    lat DOUBLE NOT NULL,
    grid_code TEXT,
    PRIMARY KEY (staff_code, at_ms)
) WITHOUT ROWID;
CREATE TABLE patrol_days (
    day TEXT NOT NULL,
    staff_code TEXT NOT NULL,
    positions INTEGER NOT NULL,
    distance_m DOUBLE NOT NULL,
    duty_s DOUBLE NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    PRIMARY KEY (day, staff_code)
) WITHOUT ROWID;
CREATE TABLE patrol_visits (
    day TEXT NOT NULL,
    staff_code TEXT NOT NULL,
    grid_code TEXT NOT NULL,
    positions INTEGER NOT NULL,
    first_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    PRIMARY KEY (day, staff_code, grid_code)
) WITHOUT ROWID;
-- A token bound to one member of the staff posts positions only for that member.
ALTER TABLE api_tokens ADD COLUMN staff_code TEXT;

INSERT INTO gpkg_contents (table_name, data_type, identifier, description, srs_id) VALUES
 ('staff', 'features', 'staff', '巡查人员 field staff', 4490);
INSERT INTO gpkg_geometry_columns VALUES ('staff', 'geom', 'POINT', 4490, 0, 0);
INSERT INTO gpkg_contents (table_name, data_type, identifier, description) VALUES
 ('staff_positions', 'attributes', 'staff_positions', '巡查轨迹 staff tracks'),
 ('patrol_days', 'attributes', 'patrol_days', '巡查日统计 patrol per day'),
 ('patrol_visits', 'attributes', 'patrol_visits', '网格巡查 grids visited per day');
