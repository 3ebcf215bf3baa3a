-- onemap core schema as an OGC GeoPackage 1.2 (the embedded default store): the same tables as
-- the PostGIS schema, geometry as GeoPackage binary in SRS 4490, registered in gpkg_contents and
-- gpkg_geometry_columns so ogrinfo and QGIS list every layer. The GeoPackage R-tree extension is
-- left out on purpose: its triggers call ST_* functions that only GDAL registers, so plain SQLite
-- writes would fail; onemap keeps its own R-trees in memory.
PRAGMA application_id = 1196444487;
PRAGMA user_version = 10200;

CREATE TABLE gpkg_spatial_ref_sys (
    srs_name TEXT NOT NULL,
    srs_id INTEGER NOT NULL PRIMARY KEY,
    organization TEXT NOT NULL,
    organization_coordsys_id INTEGER NOT NULL,
    definition TEXT NOT NULL,
    description TEXT
);
INSERT INTO gpkg_spatial_ref_sys VALUES
 ('Undefined cartesian SRS', -1, 'NONE', -1, 'undefined', 'undefined cartesian coordinate reference system'),
 ('Undefined geographic SRS', 0, 'NONE', 0, 'undefined', 'undefined geographic coordinate reference system'),
 ('WGS 84 geodetic', 4326, 'EPSG', 4326, 'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]', 'longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid'),
 ('China Geodetic Coordinate System 2000', 4490, 'EPSG', 4490, 'GEOGCS["China Geodetic Coordinate System 2000",DATUM["China_2000",SPHEROID["CGCS2000",6378137,298.257222101,AUTHORITY["EPSG","1024"]],AUTHORITY["EPSG","1043"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4490"]]', 'CGCS2000 longitude/latitude');

CREATE TABLE gpkg_contents (
    table_name TEXT NOT NULL PRIMARY KEY,
    data_type TEXT NOT NULL,
    identifier TEXT UNIQUE,
    description TEXT DEFAULT '',
    last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE,
    srs_id INTEGER,
    CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id)
);

CREATE TABLE gpkg_geometry_columns (
    table_name TEXT NOT NULL,
    column_name TEXT NOT NULL,
    geometry_type_name TEXT NOT NULL,
    srs_id INTEGER NOT NULL,
    z TINYINT NOT NULL,
    m TINYINT NOT NULL,
    CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
    CONSTRAINT uk_gc_table_name UNIQUE (table_name),
    CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
    CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id)
);

CREATE TABLE districts (
    fid INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    geom MULTIPOLYGON NOT NULL
);
CREATE TABLE streets (
    fid INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    district_code TEXT NOT NULL,
    geom MULTIPOLYGON NOT NULL
);
CREATE TABLE communities (
    fid INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    street_code TEXT NOT NULL,
    geom MULTIPOLYGON NOT NULL
);
CREATE TABLE grids (
    fid INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    community_code TEXT NOT NULL,
    area_m2 DOUBLE NOT NULL,
    geom POLYGON NOT NULL
);
CREATE TABLE departments (
    fid INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    region_code TEXT
);
CREATE TABLE responsibilities (
    fid INTEGER PRIMARY KEY AUTOINCREMENT,
    dept_code TEXT NOT NULL,
    scope TEXT NOT NULL CHECK (scope IN ('territory', 'event_class', 'component_class')),
    target TEXT NOT NULL,
    role TEXT NOT NULL,
    UNIQUE (dept_code, scope, target)
);
CREATE TABLE component_classes (
    fid INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    major TEXT NOT NULL,
    name TEXT NOT NULL,
    geom_type TEXT NOT NULL,
    competent_dept TEXT
);
CREATE TABLE event_classes (
    fid INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    major TEXT NOT NULL,
    name TEXT NOT NULL,
    default_dept TEXT
);
CREATE TABLE components (
    fid INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    class_code TEXT NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    competent_dept TEXT,
    owner_dept TEXT,
    maint_dept TEXT,
    grid_code TEXT,
    survey_date DATE,
    change_date DATE,
    source TEXT NOT NULL,
    geom GEOMETRY NOT NULL
);
CREATE TABLE cases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    class_code TEXT NOT NULL,
    kind TEXT NOT NULL,
    component_code TEXT,
    description TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL,
    urgency TEXT NOT NULL,
    grid_code TEXT,
    reported_at DATETIME NOT NULL,
    closed_at DATETIME,
    version INTEGER NOT NULL DEFAULT 1,
    geom POINT NOT NULL
);
CREATE TABLE sensors (
    fid INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    component_code TEXT,
    grid_code TEXT,
    thresholds TEXT,
    geom POINT NOT NULL
);

INSERT INTO gpkg_contents (table_name, data_type, identifier, description, srs_id) VALUES
 ('districts', 'features', 'districts', '区县 districts', 4490),
 ('streets', 'features', 'streets', '街道 streets', 4490),
 ('communities', 'features', 'communities', '社区 communities', 4490),
 ('grids', 'features', 'grids', '单元网格 unit grids', 4490),
 ('components', 'features', 'components', '管理部件 components', 4490),
 ('cases', 'features', 'cases', '案件 cases', 4490),
 ('sensors', 'features', 'sensors', '感知设备 sensors', 4490),
 ('departments', 'attributes', 'departments', '部门 departments', NULL),
 ('responsibilities', 'attributes', 'responsibilities', '责任 responsibilities', NULL),
 ('component_classes', 'attributes', 'component_classes', '部件分类 component classes', NULL),
 ('event_classes', 'attributes', 'event_classes', '事件分类 event classes', NULL);
INSERT INTO gpkg_geometry_columns VALUES
 ('districts', 'geom', 'MULTIPOLYGON', 4490, 0, 0),
 ('streets', 'geom', 'MULTIPOLYGON', 4490, 0, 0),
 ('communities', 'geom', 'MULTIPOLYGON', 4490, 0, 0),
 ('grids', 'geom', 'POLYGON', 4490, 0, 0),
 ('components', 'geom', 'GEOMETRY', 4490, 0, 0),
 ('cases', 'geom', 'POINT', 4490, 0, 0),
 ('sensors', 'geom', 'POINT', 4490, 0, 0);
CREATE INDEX components_grid ON components (grid_code);
CREATE INDEX cases_reported_at ON cases (reported_at);
