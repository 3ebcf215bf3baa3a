-- Photos of cases (上报, 核实, 处置后, 核查照片): the row describes an object in the media store
-- (`object`, `thumbnail` are its keys); a row is written only after both objects were stored, and
-- objects without a row are swept. `place` holds the EXIF position and its distance from the case.
CREATE TABLE case_media (
    id TEXT PRIMARY KEY,
    case_id INTEGER NOT NULL,
    step TEXT NOT NULL,
    content_type TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    taken_at DATETIME,
    place TEXT,
    object TEXT NOT NULL,
    thumbnail TEXT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    uploaded_at DATETIME NOT NULL
);
CREATE INDEX case_media_case ON case_media (case_id);
INSERT INTO gpkg_contents (table_name, data_type, identifier, description) VALUES
 ('case_media', 'attributes', 'case_media', '案件照片 case photos');
