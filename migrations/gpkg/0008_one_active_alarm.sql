-- A sensor has at most one active alarm, whichever process raised it. The file has one writer, but the
-- rule is the same as on PostgreSQL, where two replicas may decide at once. Older duplicates
-- (none are expected) are closed first, keeping the newest.
UPDATE alarms SET cleared_at = updated_at
WHERE cleared_at IS NULL
  AND id NOT IN (SELECT max(id) FROM alarms WHERE cleared_at IS NULL GROUP BY sensor_code);
CREATE UNIQUE INDEX alarms_one_active ON alarms (sensor_code) WHERE cleared_at IS NULL;
