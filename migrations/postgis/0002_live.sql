-- Live writes: case deadlines, the append-only case history (the fact table the workflow and
-- evaluation read), and API bearer tokens stored as SHA-256 hashes.
ALTER TABLE cases ADD COLUMN deadline_at timestamptz;

CREATE TABLE case_steps (
    case_id bigint NOT NULL REFERENCES cases (id),
    seq integer NOT NULL,
    action text NOT NULL,
    actor text NOT NULL,
    role text NOT NULL,
    dept_code text,
    status_from text,
    status_to text NOT NULL,
    at timestamptz NOT NULL,
    note text,
    PRIMARY KEY (case_id, seq)
);
CREATE INDEX case_steps_at ON case_steps USING brin (at);

CREATE TABLE api_tokens (
    hash text PRIMARY KEY,
    role text NOT NULL,
    dept_code text,
    label text,
    created_at timestamptz NOT NULL
);
