//! Configuration: the command line (clap), `ONEMAP_*` environment variables and an optional TOML
//! file, merged in that order of precedence and validated at start-up.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_STORE: &str = "var/onemap.gpkg";
pub const DEFAULT_TILE_CACHE_MB: usize = 256;
/// The built big-screen page, relative to the working directory (the repository root for scripts/run).
pub const DEFAULT_WEB_DIR: &str = "web/dist";

#[derive(Debug, Parser)]
#[command(
    name = "onemap",
    version,
    about = "The one-map server of a city operation management platform (城市运行管理服务平台)"
)]
pub struct Cli {
    /// Optional TOML file with `listen`, `store`, `tile_cache_mb`, `web_dir`.
    #[arg(long, global = true, env = "ONEMAP_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API from the store's live index.
    Serve(ServeArgs),
    /// Write a generated demo city into a store (for trying out and for benchmarks).
    Demo(DemoArgs),
    /// Manage API bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Import a collection from any file GDAL reads (Shapefile, GeoPackage, GeoJSON, FlatGeobuf,
    /// CSV, KML, DXF): validated, reprojected to CGCS2000, all or nothing.
    Import(ImportArgs),
    /// Export a collection, filtered, to GeoPackage, Shapefile (zip), GeoJSON, FlatGeobuf, CSV,
    /// KML or DXF in the CRS planners work in.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// districts, streets, communities, grids, components, cases, sensors, staff, cameras, or
    /// plans (a TOML or JSON file of emergency plans).
    pub collection: String,
    /// The source file (a zipped Shapefile too).
    pub file: PathBuf,
    /// A path ending in .gpkg or a postgres:// URL [default: var/onemap.gpkg].
    #[arg(long, env = "ONEMAP_STORE")]
    pub store: Option<String>,
    /// The layer of a multi-layer source [default: the first].
    #[arg(long)]
    pub layer_name: Option<String>,
    /// The source CRS when the file has none or a wrong one: gcj02, bd09, wgs84, cgcs2000 or
    /// EPSG:<code> (EPSG:4549 = CGCS2000 Gauss-Krüger 120°E).
    #[arg(long)]
    pub crs: Option<String>,
    /// Import the valid features and skip the rejected ones instead of importing nothing.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Map a column to a source field, COLUMN=FIELD (repeatable), e.g. --field code=BGID.
    #[arg(long = "field", value_name = "COLUMN=FIELD")]
    pub fields: Vec<String>,
    /// Shapefile text encoding (GBK, UTF-8, ...) when the .cpg is missing or wrong.
    #[arg(long)]
    pub encoding: Option<String>,
    /// Which parent wins when the code and the geometry disagree: code or geometry.
    #[arg(long, default_value = "code")]
    pub hierarchy: String,
    /// Overlaps, boundary crossings and gaps of unit grids below this area (m²) are ignored.
    #[arg(long, default_value_t = 1.0)]
    pub tolerance: f64,
    /// The rule edition of event class codes: 2013 or 2007 (which swaps majors 04 and 05).
    #[arg(long, default_value = "2013")]
    pub edition: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// districts, streets, communities, grids, components, cases, sensors, staff, cameras, or
    /// `tiles` (an offline PMTiles or MBTiles package of the vector tiles: --layers, --bbox, --minzoom,
    /// --maxzoom).
    pub collection: String,
    /// The file to write; its extension gives the format unless --format does.
    pub file: PathBuf,
    /// A path ending in .gpkg or a postgres:// URL [default: var/onemap.gpkg].
    #[arg(long, env = "ONEMAP_STORE")]
    pub store: Option<String>,
    /// gpkg, shp (zipped unless the file ends in .shp), geojson, fgb, csv, kml or dxf.
    #[arg(long)]
    pub format: Option<String>,
    /// The output CRS: cgcs2000 (default), wgs84, gcj02, bd09, EPSG:3857 or EPSG:4513-4554.
    #[arg(long)]
    pub crs: Option<String>,
    /// minLon,minLat,maxLon,maxLat.
    #[arg(long, allow_hyphen_values = true)]
    pub bbox: Option<String>,
    /// A polygon (WKT or GeoJSON, lon/lat) the features must intersect.
    #[arg(long)]
    pub within: Option<String>,
    /// An instant or interval (start/end, either open with ..) on the features' time.
    #[arg(long)]
    pub datetime: Option<String>,
    /// PROPERTY=VALUE equality filters (repeatable), as in the features API.
    #[arg(long = "filter", value_name = "PROPERTY=VALUE")]
    pub filters: Vec<String>,
    /// `export tiles FILE.pmtiles`: the tile layers, comma-separated [default: every collection].
    #[arg(long)]
    pub layers: Option<String>,
    /// `export tiles`: the first zoom [default: 12].
    #[arg(long)]
    pub minzoom: Option<u8>,
    /// `export tiles`: the last zoom [default: 16].
    #[arg(long)]
    pub maxzoom: Option<u8>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it once, as the last line of the output.
    Create(TokenCreateArgs),
    /// List the tokens (id, role, scope, label, created, expires, revoked); never the tokens.
    List(StoreArg),
    /// Revoke a token, given as itself or as its id: every server of the store refuses it
    /// within a second.
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct StoreArg {
    /// A path ending in .gpkg or a postgres:// URL [default: var/onemap.gpkg].
    #[arg(long, env = "ONEMAP_STORE")]
    pub store: Option<String>,
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    /// The token, or the id `onemap token list` shows.
    pub token: String,
    #[command(flatten)]
    pub store: StoreArg,
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// admin, supervisor, acceptor, shift_leader, dispatcher, department, viewer or public.
    #[arg(long)]
    pub role: String,
    /// The department (unified credit code) a `department` token acts for.
    #[arg(long)]
    pub dept: Option<String>,
    /// Who holds the token; recorded as the actor of their workflow steps.
    #[arg(long)]
    pub label: Option<String>,
    /// A district command centre's token: its cases, alarms and evaluation only (6 digits).
    #[arg(long, conflicts_with = "street")]
    pub district: Option<String>,
    /// A street's token: its cases, alarms and evaluation only (9 digits).
    #[arg(long)]
    pub street: Option<String>,
    /// A device token for these sensors only: the prefix of their codes.
    #[arg(long)]
    pub sensors: Option<String>,
    /// A staff member's own token (their phone's): positions only for them, their tasks.
    #[arg(long)]
    pub staff: Option<String>,
    /// How long the token lives: 90d, 12h, 30m (humantime).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub expires: Option<std::time::Duration>,
    /// A path ending in .gpkg or a postgres:// URL [default: var/onemap.gpkg].
    #[arg(long, env = "ONEMAP_STORE")]
    pub store: Option<String>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "ONEMAP_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// A path ending in .gpkg (embedded) or a postgres:// URL [default: var/onemap.gpkg].
    #[arg(long, env = "ONEMAP_STORE")]
    pub store: Option<String>,
    /// Seed the Shigatse-sized demo city into an empty store.
    #[arg(long)]
    pub demo: bool,
    /// Tile cache size in MiB; 0 turns the cache off.
    #[arg(long, env = "ONEMAP_TILE_CACHE_MB")]
    pub tile_cache_mb: Option<usize>,
    /// The built big-screen page served at /map/ [default: web/dist].
    #[arg(long, env = "ONEMAP_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Take sensor readings from this MQTT broker (mqtt://host:port), published on
    /// onemap/sensors/{code}/readings.
    #[arg(long, env = "ONEMAP_MQTT")]
    pub mqtt: Option<String>,
    /// Feed every sensor simulated readings once a minute, with now and then an episode that
    /// raises an alarm (for trying onemap out; never on a real city).
    #[arg(long)]
    pub simulate_sensors: bool,
    /// Bring a demo city to life: about 40 supervisors walk their beats, report with photos,
    /// verify and check; citizens report through Open311; the command centre and departments
    /// step cases at the domain's pace, all through the public API. Refused on a store that is
    /// not a demo city.
    #[arg(long)]
    pub simulate: bool,
    /// Serve reads only, following the change log of a store another process writes (a second
    /// process on the same GeoPackage file, or a PostgreSQL hot standby). Writes get 405.
    #[arg(long)]
    pub read_only: bool,
    /// Let anonymous clients read (the demo). Without it every read needs a token (viewer or
    /// above); writes always do.
    #[arg(long)]
    pub public_read: bool,
    /// Where case photos are kept: a directory, or s3://bucket?endpoint=URL for S3-compatible
    /// storage (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) [default: media/
    /// beside a GeoPackage store, var/media for PostgreSQL].
    #[arg(long, env = "ONEMAP_MEDIA")]
    pub media: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// A path ending in .gpkg or a postgres:// URL [default: var/onemap.gpkg].
    #[arg(long, env = "ONEMAP_STORE")]
    pub store: Option<String>,
    /// `shigatse` (about 6,500 grids), `chongqing` (65,000 grids, 10 million components,
    /// 1 million cases) or a factor applied to the Shigatse city, e.g. 0.1 or 3.
    #[arg(long, default_value = "shigatse")]
    pub scale: String,
    /// Random seed; the same seed always gives the same city.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Leave a store that already holds a city alone (and succeed) instead of refusing it.
    #[arg(long)]
    pub if_empty: bool,
}

/// The optional TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub store: Option<String>,
    pub tile_cache_mb: Option<usize>,
    pub web_dir: Option<PathBuf>,
    /// The working calendar deadlines are counted on.
    pub calendar: Option<crate::cases::calendar::Calendar>,
    /// Working hours a filed case has to be dispatched in (派遣时限) [default: 1].
    pub dispatch_hours: Option<f64>,
    /// Weights and grade bounds of the evaluation score (`[evaluation.weights]`,
    /// `[evaluation.grades]`).
    pub evaluation: Option<crate::cases::evaluation::Scoring>,
    /// The MQTT broker readings come from (like `--mqtt`).
    pub mqtt: Option<String>,
    /// Stale time, clock drift and feed throttling of sensor readings (`[sensors]`).
    pub sensors: Option<crate::sensors::ingest::Settings>,
    /// Duty timeout, clock drift and feed throttling of staff positions (`[staff]`).
    pub staff: Option<crate::staff::positions::Settings>,
    /// Escalation sweeps and outside-call retries of emergency plans (`[linkage]`).
    pub linkage: Option<crate::linkage::Settings>,
    /// Where case photos are kept (like `--media`).
    pub media_store: Option<String>,
    /// Size limit, distance and time flags, and the photo rule of case photos (`[media]`).
    pub media: Option<crate::media::Settings>,
    /// Days the change log keeps changes [default: 7]: the live feed can be resumed that far
    /// back, and a server stopped longer reloads the city when it starts following again.
    pub log_retention_days: Option<i64>,
    /// Per-client rate limits of the expensive routes (`[rate_limits]`).
    pub rate_limits: Option<RateQuotas>,
    /// What one analysis may cost (`[cost_limits]`: `density_work`, `answer_bytes`).
    pub cost_limits: Option<crate::analysis::CostLimits>,
}

/// Requests a client may make at once (burst) and then per second, on the analysis and export
/// routes (heavy) and on density tiles; 0 turns a limit off (a benchmark, a trusted network).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateQuotas {
    pub heavy_burst: u32,
    pub heavy_per_s: u32,
    pub density_burst: u32,
    pub density_per_s: u32,
}

impl Default for RateQuotas {
    fn default() -> Self {
        RateQuotas { heavy_burst: 30, heavy_per_s: 2, density_burst: 200, density_per_s: 40 }
    }
}

impl FileConfig {
    pub fn load(path: Option<&PathBuf>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.clone(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse(path.clone(), e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0}: {1}")]
    Parse(PathBuf, String),
    #[error("store {0:?}: use a path ending in .gpkg or a postgres:// URL")]
    Store(String),
    #[error(transparent)]
    Calendar(crate::cases::calendar::CalendarError),
    #[error("config: {0}")]
    Invalid(String),
}

/// The settings `serve` runs with, after merging and validation.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub store: String,
    pub demo: bool,
    pub tile_cache_mb: usize,
    pub web_dir: PathBuf,
    /// Time limits counted on the working calendar.
    pub deadlines: crate::cases::Deadlines,
    pub scoring: crate::cases::evaluation::Scoring,
    pub mqtt: Option<crate::mqtt::BrokerUrl>,
    pub sensors: crate::sensors::ingest::Settings,
    pub staff: crate::staff::positions::Settings,
    pub linkage: crate::linkage::Settings,
    /// The media store's location and the photo rules.
    pub media_store: String,
    pub media: crate::media::Settings,
    pub simulate_sensors: bool,
    pub simulate: bool,
    pub log_retention: chrono::Duration,
    pub read_only: bool,
    pub public_read: bool,
    pub rate_limits: RateQuotas,
    pub cost_limits: crate::analysis::CostLimits,
}

/// How long the change log keeps changes unless configured.
pub const DEFAULT_LOG_RETENTION_DAYS: i64 = 7;

impl ServeConfig {
    pub fn resolve(args: &ServeArgs, file: FileConfig) -> Result<Self, ConfigError> {
        let store = store_location(args.store.as_deref(), file.store)?;
        let dispatch_hours = file.dispatch_hours.unwrap_or(crate::cases::DISPATCH_HOURS);
        if !(dispatch_hours.is_finite() && dispatch_hours > 0.0) {
            return Err(ConfigError::Invalid(format!("dispatch_hours must be positive, not {dispatch_hours}")));
        }
        let scoring = file.evaluation.unwrap_or_default();
        scoring.check().map_err(ConfigError::Invalid)?;
        let sensors = file.sensors.unwrap_or_default();
        sensors.check().map_err(ConfigError::Invalid)?;
        let staff = file.staff.unwrap_or_default();
        staff.check().map_err(ConfigError::Invalid)?;
        let linkage = file.linkage.unwrap_or_default();
        linkage.check().map_err(ConfigError::Invalid)?;
        let media = file.media.unwrap_or_default();
        media.check().map_err(ConfigError::Invalid)?;
        let media_store =
            args.media.clone().or(file.media_store).unwrap_or_else(|| crate::media::default_location(&store));
        let mqtt = args.mqtt.clone().or(file.mqtt).map(|u| u.parse()).transpose().map_err(ConfigError::Invalid)?;
        let retention_days = file.log_retention_days.unwrap_or(DEFAULT_LOG_RETENTION_DAYS);
        if !(1..=3650).contains(&retention_days) {
            return Err(ConfigError::Invalid(format!("log_retention_days must be 1 to 3650, not {retention_days}")));
        }
        if args.read_only && (args.demo || args.simulate_sensors || args.simulate || mqtt.is_some()) {
            return Err(ConfigError::Invalid(
                "--read-only serves reads only: it cannot seed --demo, --simulate(-sensors) or take --mqtt readings"
                    .into(),
            ));
        }
        Ok(ServeConfig {
            read_only: args.read_only,
            public_read: args.public_read,
            rate_limits: file.rate_limits.unwrap_or_default(),
            cost_limits: file.cost_limits.unwrap_or_default(),
            log_retention: chrono::Duration::days(retention_days),
            simulate_sensors: args.simulate_sensors,
            simulate: args.simulate,
            mqtt,
            sensors,
            staff,
            linkage,
            media,
            media_store,
            listen: args.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
            store,
            demo: args.demo,
            tile_cache_mb: args.tile_cache_mb.or(file.tile_cache_mb).unwrap_or(DEFAULT_TILE_CACHE_MB),
            web_dir: args.web_dir.clone().or(file.web_dir).unwrap_or_else(|| DEFAULT_WEB_DIR.into()),
            deadlines: crate::cases::Deadlines {
                calendar: (&file.calendar.unwrap_or_default()).try_into().map_err(ConfigError::Calendar)?,
                dispatch_hours,
                ..Default::default()
            },
            scoring,
        })
    }
}

/// The store a command works on: its `--store`, else the config file's, else the default;
/// checked before anything is opened.
pub fn store_location(arg: Option<&str>, file: Option<String>) -> Result<String, ConfigError> {
    let location = arg.map(String::from).or(file).unwrap_or_else(|| DEFAULT_STORE.into());
    validate_store(&location)?;
    Ok(location)
}

/// Rejects a store location that neither backend accepts, before anything is opened.
pub fn validate_store(s: &str) -> Result<(), ConfigError> {
    if s.ends_with(".gpkg") || s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(())
    } else {
        Err(ConfigError::Store(s.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_beats_file_beats_default() {
        let cli = Cli::parse_from(["onemap", "serve", "--listen", "127.0.0.1:9000"]);
        let Command::Serve(args) = cli.command else { panic!("serve") };
        let file: FileConfig = toml::from_str("listen = \"0.0.0.0:1\"\nstore = \"x.gpkg\"\ntile_cache_mb = 0").unwrap();
        let c = ServeConfig::resolve(&args, file).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.store, "x.gpkg");
        assert_eq!(c.tile_cache_mb, 0);
        let c = ServeConfig::resolve(&args, FileConfig::default()).unwrap();
        assert_eq!(c.store, DEFAULT_STORE);
    }

    #[test]
    fn bad_store_and_unknown_keys_are_rejected() {
        assert!(validate_store("mysql://x").is_err());
        let cli = Cli::parse_from(["onemap", "serve"]);
        let Command::Serve(args) = cli.command else { panic!("serve") };
        for bad in ["dispatch_hours = 0", "[evaluation.weights]\nclosure = -5", "[evaluation.grades]\na = 10\nb = 50"] {
            let file: FileConfig = toml::from_str(bad).unwrap();
            assert!(ServeConfig::resolve(&args, file).is_err(), "{bad}");
        }
        let file: FileConfig = toml::from_str("dispatch_hours = 0.5\n[evaluation.weights]\nclosure = 50").unwrap();
        let c = ServeConfig::resolve(&args, file).unwrap();
        assert_eq!(
            (c.deadlines.dispatch_hours, c.scoring.weights.closure, c.scoring.weights.ontime_closure),
            (0.5, 50.0, 40.0)
        );
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
    }
}
