-- A sensor has at most one active alarm, whichever replica's rules raised it: readings of one
-- sensor arriving at two replicas may make both decide to raise it at once. Older duplicates
-- (none are expected) are closed first, keeping the newest.
UPDATE alarms SET cleared_at = updated_at
WHERE cleared_at IS NULL
  AND id NOT IN (SELECT max(id) FROM alarms WHERE cleared_at IS NULL GROUP BY sensor_code);
CREATE UNIQUE INDEX alarms_one_active ON alarms (sensor_code) WHERE cleared_at IS NULL;
