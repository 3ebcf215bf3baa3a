-- Lifeline monitoring: sensor readings (time as integer milliseconds since 1970 UTC, keyed by
-- sensor and time so duplicates drop out and one sensor's history is one range read), and
-- alarms with their lifecycle and acknowledgement. Both are GeoPackage attribute tables, so
-- QGIS lists them beside the layers.
CREATE TABLE sensor_readings (
    sensor_code TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    value DOUBLE NOT NULL,
    PRIMARY KEY (sensor_code, at_ms)
) WITHOUT ROWID;

CREATE TABLE alarms (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sensor_code TEXT NOT NULL,
    level TEXT NOT NULL,
    peak_level TEXT NOT NULL,
    raised_at DATETIME NOT NULL,
    value DOUBLE NOT NULL,
    updated_at DATETIME NOT NULL,
    last_value DOUBLE NOT NULL,
    cleared_at DATETIME,
    acked_at DATETIME,
    acked_by TEXT,
    case_id INTEGER
);
CREATE INDEX alarms_active ON alarms (sensor_code) WHERE cleared_at IS NULL;
CREATE INDEX alarms_raised_at ON alarms (raised_at);

INSERT INTO gpkg_contents (table_name, data_type, identifier, description) VALUES
 ('sensor_readings', 'attributes', 'sensor_readings', '传感器读数 sensor readings'),
 ('alarms', 'attributes', 'alarms', '告警 alarms');
