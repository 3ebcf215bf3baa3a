-- Field staff (监督员, 信息采集员, a department's 处置人员): the registry (its point is where a
-- member was registered; the live position comes from the tracks), the tracks in a time-ordered
-- table (BRIN on time; the primary key serves one member's day and drops repeats), and the
-- patrol tallies each positions batch adds to, per city day, so coverage reports never scan the
-- tracks (first_ms, last_ms: milliseconds since 1970 UTC, as the GeoPackage store keeps them).
CREATE TABLE staff (
    code text PRIMARY KEY,
    name text NOT NULL,
    role text NOT NULL,
    dept_code text,
    community_code text,
    grids jsonb,
    geom geometry(Point, 4490) NOT NULL
);
CREATE INDEX staff_geom ON staff USING gist (geom);
CREATE TABLE staff_positions (
    staff_code text NOT NULL,
    at timestamptz NOT NULL,
    lon double precision NOT NULL,
    lat double precision NOT NULL,
    grid_code text,
    PRIMARY KEY (staff_code, at)
);
CREATE INDEX staff_positions_at ON staff_positions USING brin (at);
CREATE TABLE patrol_days (
    day date NOT NULL,
    staff_code text NOT NULL,
    positions bigint NOT NULL,
    distance_m double precision NOT NULL,
    duty_s double precision NOT NULL,
    first_ms bigint NOT NULL,
    last_ms bigint NOT NULL,
    PRIMARY KEY (day, staff_code)
);
CREATE TABLE patrol_visits (
    day date NOT NULL,
    staff_code text NOT NULL,
    grid_code text NOT NULL,
    positions bigint NOT NULL,
    first_ms bigint NOT NULL,
    last_ms bigint NOT NULL,
    PRIMARY KEY (day, staff_code, grid_code)
);
-- A token bound to one member of the staff posts positions only for that member.
ALTER TABLE api_tokens ADD COLUMN staff_code text;
