-- Photos of cases (上报, 核实, 处置后, 核查照片): the row describes an object in the media store
-- (`object`, `thumbnail` are its keys); a row is written only after both objects were stored, and
-- objects without a row are swept. `place` holds the EXIF position and its distance from the case.
CREATE TABLE case_media (
    id text PRIMARY KEY,
    case_id bigint NOT NULL,
    step text NOT NULL,
    content_type text NOT NULL,
    bytes bigint NOT NULL,
    width bigint NOT NULL,
    height bigint NOT NULL,
    taken_at timestamptz,
    place jsonb,
    object text NOT NULL,
    thumbnail text NOT NULL,
    actor text NOT NULL,
    role text NOT NULL,
    uploaded_at timestamptz NOT NULL
);
CREATE INDEX case_media_case ON case_media (case_id);
