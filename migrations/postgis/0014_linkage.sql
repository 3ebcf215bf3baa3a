-- 一键联动 (joint response): cameras (视频监控) as a feature layer; emergency plans (预案), one row
-- per version so a change never alters an incident started from an earlier one; incidents, whose
-- tasks and outside-system deliveries live in `state` (one document, replaced as a whole under
-- the `version` guard). At most one open incident per automatic trigger (`auto_key`, the
-- sensor), whichever replica starts it.
CREATE TABLE cameras (
    code text PRIMARY KEY,
    name text NOT NULL,
    stream_url text,
    direction double precision,
    grid_code text,
    geom geometry(Point, 4490) NOT NULL
);
CREATE INDEX cameras_geom ON cameras USING gist (geom);
CREATE TABLE plans (
    code text NOT NULL,
    version bigint NOT NULL,
    name text NOT NULL,
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    created_by text NOT NULL,
    PRIMARY KEY (code, version)
);
CREATE TABLE incidents (
    id text PRIMARY KEY,
    plan_code text NOT NULL,
    plan_version bigint NOT NULL,
    status text NOT NULL,
    auto_key text,
    alarm_id text,
    case_id text,
    lon double precision NOT NULL,
    lat double precision NOT NULL,
    opened_at timestamptz NOT NULL,
    closed_at timestamptz,
    pending bigint NOT NULL,
    version bigint NOT NULL,
    state jsonb NOT NULL
);
CREATE UNIQUE INDEX incidents_one_open ON incidents (auto_key) WHERE status = 'open';
CREATE INDEX incidents_status ON incidents (status);
CREATE INDEX incidents_pending ON incidents (pending) WHERE pending = 1;
CREATE INDEX incidents_alarm ON incidents (alarm_id);
