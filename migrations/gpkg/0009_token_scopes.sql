-- Tokens scoped to an area or to sensors, with an expiry; revocations are rows of their own, so
-- the token table is only ever appended to and every server hears of a revocation from the log.
ALTER TABLE api_tokens ADD COLUMN area_code TEXT;
ALTER TABLE api_tokens ADD COLUMN sensors_prefix TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_at DATETIME;
CREATE TABLE token_revocations (
    hash TEXT PRIMARY KEY,
    revoked_at DATETIME NOT NULL
);
INSERT INTO gpkg_contents (table_name, data_type, identifier, description) VALUES
 ('token_revocations', 'attributes', 'token_revocations', '已吊销令牌 revoked tokens');
-- A public reporting key sees its own Open311 requests: the first steps it recorded.
CREATE INDEX case_steps_actor ON case_steps (actor);
