//! Case photos (案件照片): the evidence of every field step, kept as objects in a media store (a
//! directory, or an S3-compatible bucket: MinIO, Ceph, a cloud OSS) through `object_store`, and
//! described by a `case_media` row logged as a change (`case.media` on the feed).
//!
//! The order of writes keeps the promise that no row names a missing object: both objects (the
//! original and its thumbnail) are stored first, then the row and its change commit; a failed
//! commit deletes the objects again, and [`Photos::sweep`] deletes what a crash left between the
//! two.

pub mod photo;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};

use crate::events::{Change, Live};
use crate::model::{Action, Case, Collection, Media, MediaStep, PhotoPlace, Str};
use crate::store::log::{ChangeRow, Op};
use crate::store::{self, Store, StoreError};

/// `[media]` in the config file.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Largest photo accepted, in bytes (413 beyond).
    pub max_bytes: usize,
    /// A photo whose EXIF place is farther than this from its case is flagged `far`.
    pub far_m: f64,
    /// A photo taken more than this many hours before its case was reported is flagged `early`.
    pub early_h: f64,
    /// Workflow actions that need a photo of their own step first: `handle` (the department's
    /// after-photo, 处置后照片), `check_pass` (the supervisor's check photo, 核查照片), `verify`.
    pub require_photo: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { max_bytes: 10 * 1024 * 1024, far_m: 200.0, early_h: 24.0, require_photo: Vec::new() }
    }
}

impl Settings {
    pub fn check(&self) -> Result<(), String> {
        if !(1024..=200 * 1024 * 1024).contains(&self.max_bytes) {
            return Err("media.max_bytes: 1 KiB to 200 MiB".into());
        }
        if !(self.far_m.is_finite() && self.far_m > 0.0 && self.early_h.is_finite() && self.early_h >= 0.0) {
            return Err("media.far_m must be positive and media.early_h not negative".into());
        }
        for a in &self.require_photo {
            if Action::parse(a).and_then(step_proving).is_none() {
                return Err(format!("media.require_photo: {a:?} is not one of verify, handle, check_pass"));
            }
        }
        Ok(())
    }

    /// The photo step `action` needs first, when the rule asks for one.
    pub fn required_for(&self, action: Action) -> Option<MediaStep> {
        self.require_photo.iter().any(|a| a == action.as_str()).then(|| step_proving(action)).flatten()
    }
}

/// The photo step that proves `action`.
fn step_proving(action: Action) -> Option<MediaStep> {
    MediaStep::ALL.into_iter().find(|s| s.proves() == Some(action))
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the photo is {bytes} bytes, more than the {max} allowed")]
    TooLarge { bytes: usize, max: usize },
    #[error("not a JPEG, PNG or WebP image (the type is read from the bytes, not the name)")]
    Unsupported,
    #[error("{0}")]
    Invalid(String),
    #[error("media store {0:?}: {1}")]
    Location(String, String),
    #[error("no photo {0}")]
    Missing(String),
    #[error("media store: {0}")]
    Objects(#[from] object_store::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{action} needs a photo of the {step} step first: POST /api/v1/cases/{case}/media with step={step}")]
    PhotoRequired { case: i64, action: &'static str, step: &'static str },
}

/// Where photos go unless `--media` says: `media/` beside a GeoPackage store, `var/media` for
/// PostgreSQL.
pub fn default_location(store: &str) -> String {
    if store.ends_with(".gpkg") {
        let parent = std::path::Path::new(store).parent().filter(|p| !p.as_os_str().is_empty());
        return parent.unwrap_or(std::path::Path::new(".")).join("media").display().to_string();
    }
    "var/media".into()
}

/// Opens the media store at `location`: a directory (created if missing), or
/// `s3://bucket[/prefix]?endpoint=URL[&region=R]` with the credentials from the usual
/// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` variables (never on the command line).
pub fn open(location: &str) -> Result<Arc<dyn ObjectStore>, MediaError> {
    let bad = |why: String| MediaError::Location(location.into(), why);
    if let Some(rest) = location.strip_prefix("s3://") {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket: use s3://bucket?endpoint=http://host:port".into()));
        }
        let params: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| bad(e.to_string()))?;
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
            // MinIO and most S3-compatible servers ignore the region but sign with one.
            builder = builder.with_region("us-east-1");
        }
        for (k, v) in params {
            builder = match k.as_str() {
                "endpoint" => builder.with_allow_http(v.starts_with("http://")).with_endpoint(v),
                "region" => builder.with_region(v),
                _ => return Err(bad(format!("unknown parameter {k:?}; use endpoint, region"))),
            };
        }
        let s3: Arc<dyn ObjectStore> = Arc::new(builder.build().map_err(|e| bad(e.to_string()))?);
        return Ok(match prefix.trim_matches('/') {
            "" => s3,
            p => Arc::new(object_store::prefix::PrefixStore::new(s3, p)),
        });
    }
    if location.contains("://") {
        return Err(bad("use a directory or s3://bucket?endpoint=...".into()));
    }
    std::fs::create_dir_all(location).map_err(|e| bad(e.to_string()))?;
    let dir = object_store::local::LocalFileSystem::new_with_prefix(location).map_err(|e| bad(e.to_string()))?;
    Ok(Arc::new(dir))
}

/// Photos in and out: the media store, the rules, and a bound on decodes at once (a 12-megapixel
/// JPEG takes about 40 MB while it is decoded).
pub struct Photos {
    objects: Arc<dyn ObjectStore>,
    location: String,
    settings: parking_lot::RwLock<Settings>,
    decoding: tokio::sync::Semaphore,
}

/// Every object key starts here: `cases/{case}/{id}.{ext}` and `cases/{case}/{id}.thumb.jpg`.
const PREFIX: &str = "cases";

impl Photos {
    pub fn new(objects: Arc<dyn ObjectStore>, location: impl Into<String>) -> Self {
        let decoders = std::thread::available_parallelism().map_or(2, |n| n.get()).max(2);
        Photos {
            objects,
            location: location.into(),
            settings: Default::default(),
            decoding: tokio::sync::Semaphore::new(decoders),
        }
    }

    /// Photos kept in memory only (tests, benches and servers built without a media store).
    pub fn in_memory() -> Self {
        Photos::new(Arc::new(object_store::memory::InMemory::new()), "memory")
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn settings(&self) -> Settings {
        self.settings.read().clone()
    }

    pub fn configure(&self, settings: Settings) {
        *self.settings.write() = settings;
    }

    /// Takes in a photo of `case` at `step` from `actor` (in `role`): checked, inspected,
    /// stored (objects first, then the row and its change), then announced. Returns the row and
    /// the change's sequence number.
    pub async fn attach(
        &self,
        live: &Live,
        case: &Case,
        step: MediaStep,
        bytes: Bytes,
        (actor, role): (&Str, &str),
    ) -> Result<(Media, i64), MediaError> {
        let settings = self.settings();
        if bytes.len() > settings.max_bytes {
            return Err(MediaError::TooLarge { bytes: bytes.len(), max: settings.max_bytes });
        }
        photo::sniff(&bytes).ok_or(MediaError::Unsupported)?;
        let seen = {
            let _permit = self.decoding.acquire().await.expect("the semaphore is never closed");
            let (bytes, city) = (bytes.clone(), crate::model::city_tz());
            tokio::task::spawn_blocking(move || photo::inspect(&bytes, city))
                .await
                .map_err(|e| MediaError::Invalid(format!("the photo could not be read: {e}")))??
        };
        let now = Utc::now();
        let id: Str = format!("{:012x}{:08x}", now.timestamp_millis(), rand::random::<u32>()).into();
        let object: Str = format!("{PREFIX}/{}/{id}.{}", case.id, seen.kind.extension()).into();
        let thumbnail: Str = format!("{PREFIX}/{}/{id}.thumb.jpg", case.id).into();
        let place = seen.place.map(|(lon, lat)| PhotoPlace {
            lon,
            lat,
            distance_m: crate::geo::crs::haversine_m((lon, lat), (case.geom.x(), case.geom.y())),
        });
        let media = Media {
            id,
            case_id: case.id,
            step,
            content_type: seen.kind.content_type().into(),
            bytes: bytes.len() as i64,
            width: seen.width.into(),
            height: seen.height.into(),
            taken_at: seen.taken_at,
            place,
            object,
            thumbnail,
            actor: actor.clone(),
            role: role.into(),
            uploaded_at: now,
        };
        let (original, thumb) = (ObjectPath::from(media.object.as_str()), ObjectPath::from(media.thumbnail.as_str()));
        self.objects.put(&original, PutPayload::from_bytes(bytes)).await?;
        let stored = async {
            self.objects.put(&thumb, PutPayload::from(seen.thumbnail)).await?;
            let mut data = to_json(&media, case, &settings, false);
            // What the feed's department filter reads (see `http::events::visible`).
            data["dept_code"] = json!(case.dept_code);
            data["grid_code"] = json!(case.grid_code);
            let row =
                ChangeRow::record(Collection::Media, media.id.to_string(), Op::Upsert, Some("case.media"), Some(data));
            let in_flight = live.in_flight();
            let seqs = store::insert(&**live.store(), std::slice::from_ref(&media), vec![row.clone()]).await?;
            let seq = *seqs.first().expect("one change, one sequence number");
            live.commit(vec![Change::committed(seq, row, Vec::new())], in_flight).await?;
            Ok::<i64, MediaError>(seq)
        }
        .await;
        match stored {
            Ok(seq) => Ok((media, seq)),
            Err(e) => {
                // Nothing names them: take them back now rather than wait for the sweep.
                for p in [&original, &thumb] {
                    let _ = self.objects.delete(p).await;
                }
                Err(e)
            }
        }
    }

    /// The photos of case `case_id`, oldest first.
    pub async fn of_case(&self, store: &dyn Store, case_id: i64) -> Result<Vec<Media>, MediaError> {
        let mut list: Vec<Media> = store::find(store, "case_id", store::schema::Val::Int(case_id)).await?;
        list.sort_by(|a, b| (a.uploaded_at, &a.id).cmp(&(b.uploaded_at, &b.id)));
        Ok(list)
    }

    /// The bytes of an object a row names.
    pub async fn read(&self, key: &str) -> Result<Bytes, MediaError> {
        match self.objects.get(&ObjectPath::from(key)).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(MediaError::Missing(key.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `action` may go ahead on a case whose last step was at `since`: when the rule asks
    /// for a photo of its step, one uploaded since.
    pub async fn check_required(
        &self,
        store: &dyn Store,
        case_id: i64,
        action: Action,
        since: DateTime<Utc>,
    ) -> Result<(), MediaError> {
        let Some(step) = self.settings().required_for(action) else { return Ok(()) };
        let photos = self.of_case(store, case_id).await?;
        if photos.iter().any(|m| m.step == step && m.uploaded_at >= since) {
            return Ok(());
        }
        Err(MediaError::PhotoRequired { case: case_id, action: action.as_str(), step: step.as_str() })
    }

    /// Deletes the objects no row names that are older than `grace` (an upload in flight has
    /// stored its objects and not yet its row); returns how many. Run by one process.
    pub async fn sweep(&self, store: &dyn Store, grace: Duration) -> Result<usize, MediaError> {
        let known: std::collections::HashSet<String> =
            store.keys(&store::schema::CASE_MEDIA).await?.into_iter().collect();
        let cutoff = Utc::now() - grace;
        let prefix = ObjectPath::from(PREFIX);
        let orphans: Vec<ObjectPath> = self
            .objects
            .list(Some(&prefix))
            .try_filter_map(|meta| {
                let id = meta.location.filename().and_then(|f| f.split('.').next()).unwrap_or("").to_string();
                let orphan = meta.last_modified < cutoff && !known.contains(&id);
                std::future::ready(Ok(orphan.then_some(meta.location)))
            })
            .try_collect()
            .await?;
        for p in &orphans {
            self.objects.delete(p).await?;
        }
        if !orphans.is_empty() {
            tracing::info!(objects = orphans.len(), "swept photos no case names");
        }
        Ok(orphans.len())
    }
}

/// How often the lease holder sweeps orphan objects, and how old they must be.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
pub const SWEEP_GRACE_MIN: i64 = 60;

/// Sweeps orphan photos every `every`.
pub async fn run_sweeps(photos: Arc<Photos>, store: Arc<dyn Store>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = photos.sweep(&*store, Duration::minutes(SWEEP_GRACE_MIN)).await {
            tracing::warn!(error = %e, "photo sweep failed");
        }
    }
}

/// What is suspect about a photo as evidence: `far` from its case, taken `early` (long before
/// the case was reported), `no_place` or `no_time` in its EXIF (a screenshot, an edited copy).
pub fn flags(m: &Media, case: &Case, settings: &Settings) -> Vec<&'static str> {
    let mut out = Vec::new();
    match m.place {
        Some(p) if p.distance_m > settings.far_m => out.push("far"),
        Some(_) => {}
        None => out.push("no_place"),
    }
    match m.taken_at {
        Some(t) if t < case.reported_at - Duration::seconds((settings.early_h * 3600.0) as i64) => out.push("early"),
        Some(_) => {}
        None => out.push("no_time"),
    }
    out
}

/// A photo as the API shows it; `anonymous` readers do not see who took it.
pub fn to_json(m: &Media, case: &Case, settings: &Settings, anonymous: bool) -> Value {
    let url = format!("/api/v1/cases/{}/media/{}", m.case_id, m.id);
    let secs = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let flags = flags(m, case, settings);
    json!({
        "id": m.id, "case_id": m.case_id, "step": m.step.as_str(), "content_type": m.content_type,
        "bytes": m.bytes, "width": m.width, "height": m.height,
        "taken_at": m.taken_at.map(secs),
        "lon": m.place.map(|p| p.lon), "lat": m.place.map(|p| p.lat),
        "distance_m": m.place.map(|p| crate::model::tenths(p.distance_m)),
        "far": flags.contains(&"far"), "flags": flags,
        "url": url, "thumbnail_url": format!("{url}/thumbnail"),
        "uploaded_at": secs(m.uploaded_at),
        "actor": if anonymous { None } else { Some(&m.actor) }, "role": m.role,
    })
}
