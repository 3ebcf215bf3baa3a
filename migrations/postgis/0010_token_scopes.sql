-- Tokens scoped to an area or to sensors, with an expiry; revocations are rows of their own, so
-- the token table is only ever appended to and every server hears of a revocation from the log.
ALTER TABLE api_tokens ADD COLUMN area_code text;
ALTER TABLE api_tokens ADD COLUMN sensors_prefix text;
ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz;
CREATE TABLE token_revocations (
    hash text PRIMARY KEY,
    revoked_at timestamptz NOT NULL
);
-- A public reporting key sees its own Open311 requests: the first steps it recorded.
CREATE INDEX case_steps_actor ON case_steps (actor);
