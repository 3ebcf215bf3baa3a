-- Lifeline monitoring: sensor readings in a time-ordered table (BRIN on time for range scans
-- over the whole city; the primary key serves one sensor's history and drops duplicates), and
-- alarms with their lifecycle and acknowledgement.
CREATE TABLE sensor_readings (
    sensor_code text NOT NULL,
    at timestamptz NOT NULL,
    value double precision NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sensor_code, at)
);
CREATE INDEX sensor_readings_at ON sensor_readings USING brin (at);

CREATE TABLE alarms (
    id bigserial PRIMARY KEY,
    sensor_code text NOT NULL,
    level text NOT NULL,
    peak_level text NOT NULL,
    raised_at timestamptz NOT NULL,
    value double precision NOT NULL,
    updated_at timestamptz NOT NULL,
    last_value double precision NOT NULL,
    cleared_at timestamptz,
    acked_at timestamptz,
    acked_by text,
    case_id bigint REFERENCES cases (id)
);
CREATE INDEX alarms_active ON alarms (sensor_code) WHERE cleared_at IS NULL;
CREATE INDEX alarms_raised_at ON alarms (raised_at);
