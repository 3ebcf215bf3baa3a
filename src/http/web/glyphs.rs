//! Glyph ranges for MapLibre labels (SDF glyphs in the `glyphs.proto` PBF format), rendered on
//! demand with FreeType from the fonts installed on this machine, the way martin serves them.
//! Chinese labels do not come from here: the page draws ideographs with the browser's own CJK
//! font (MapLibre's `localIdeographFontFamily`), so only Latin, digits and punctuation are asked for.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use axum::body::Bytes;
use parking_lot::Mutex;
use pbf_font_tools::prost::Message;
use pbf_font_tools::{Glyphs, combine_glyphs, freetype, glyph_range_for_face};

/// Where Debian's font packages put their files.
const FONT_DIRS: &[&str] = &["/usr/share/fonts", "/usr/local/share/fonts"];
/// Rendering parameters every MapLibre and Mapbox renderer expects (node-fontnik's).
const SIZE: usize = 24;
const RADIUS: usize = 8;
const CUTOFF: f64 = 0.25;
/// Rendered ranges kept in memory; a CJK range is a few hundred KB, so cap by bytes.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum GlyphError {
    #[error("no font {0:?} on this server; GET /fonts lists the fonts a style may use")]
    UnknownFont(String),
    #[error("rendering glyphs: {0}")]
    Render(String),
}

struct Fonts {
    /// Font name (family and style, as in a style's `text-font`) -> file and face index.
    faces: BTreeMap<String, (PathBuf, isize)>,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    ranges: HashMap<(String, u32), Bytes>,
    order: VecDeque<(String, u32)>,
    bytes: usize,
}

impl Cache {
    fn insert(&mut self, key: (String, u32), value: Bytes) {
        if self.ranges.contains_key(&key) {
            return;
        }
        self.bytes += value.len();
        self.ranges.insert(key.clone(), value);
        self.order.push_back(key);
        while self.bytes > CACHE_BYTES {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(v) = self.ranges.remove(&old) {
                self.bytes -= v.len();
            }
        }
    }
}

/// The font catalogue, scanned once on first use (blocking: call from a blocking thread).
fn fonts() -> &'static Fonts {
    static FONTS: OnceLock<Fonts> = OnceLock::new();
    FONTS.get_or_init(|| {
        let faces = scan(FONT_DIRS.iter().map(Path::new));
        tracing::info!(fonts = faces.len(), "font catalogue scanned");
        Fonts { faces, cache: Mutex::new(Cache::default()) }
    })
}

/// Every face of every TrueType / OpenType file under `dirs`, by "Family Style" name. Files are
/// visited in path order so the same name always resolves to the same file.
fn scan<'a>(dirs: impl Iterator<Item = &'a Path>) -> BTreeMap<String, (PathBuf, isize)> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.map(Path::to_path_buf).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| ["ttf", "otf", "ttc"].contains(&x.to_ascii_lowercase().as_str()))
            {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut faces = BTreeMap::new();
    let Ok(lib) = freetype::Library::init() else {
        tracing::warn!("FreeType failed to initialise: no glyphs will be served");
        return faces;
    };
    for path in files {
        let mut index = 0;
        loop {
            let Ok(face) = lib.new_face(&path, index) else { break };
            if let Some(name) = face_name(&face) {
                faces.entry(name).or_insert_with(|| (path.clone(), index));
            }
            index += 1;
            if index >= face.num_faces() as isize {
                break;
            }
        }
    }
    faces
}

fn face_name(face: &freetype::Face) -> Option<String> {
    let family = face.family_name()?;
    Some(match face.style_name() {
        Some(style) => format!("{family} {style}"),
        None => family,
    })
}

/// The names a style may put in `text-font`.
pub fn names() -> Vec<String> {
    fonts().faces.keys().cloned().collect()
}

/// The PBF of the 256 code points from `start` for a comma-separated font stack: each code point
/// from the first font in the stack that has it. Fonts of the stack this server lacks are
/// skipped; a stack with none of them is an error.
pub fn range(stack: &str, start: u32) -> Result<Bytes, GlyphError> {
    let fonts = fonts();
    let key = (stack.to_string(), start);
    if let Some(hit) = fonts.cache.lock().ranges.get(&key) {
        return Ok(hit.clone());
    }
    let known: Vec<&(PathBuf, isize)> = stack.split(',').filter_map(|n| fonts.faces.get(n.trim())).collect();
    if known.is_empty() {
        return Err(GlyphError::UnknownFont(stack.to_string()));
    }
    let render = |e: freetype::Error| GlyphError::Render(e.to_string());
    let lib = freetype::Library::init().map_err(render)?;
    let mut parts = Vec::with_capacity(known.len());
    for (path, index) in known {
        let face = lib.new_face(path, *index).map_err(render)?;
        let glyphs = glyph_range_for_face(&face, start, start + 255, SIZE, RADIUS, CUTOFF)
            .map_err(|e| GlyphError::Render(format!("{}: {e}", path.display())))?;
        parts.push(Glyphs { stacks: vec![glyphs] });
    }
    let mut glyphs = combine_glyphs(parts).unwrap_or_default();
    for s in &mut glyphs.stacks {
        s.name = stack.to_string();
        s.range = format!("{start}-{}", start + 255);
    }
    let bytes = Bytes::from(glyphs.encode_to_vec());
    fonts.cache.lock().insert(key, bytes.clone());
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_stays_under_its_cap() {
        let mut c = Cache::default();
        let chunk = Bytes::from(vec![0u8; CACHE_BYTES / 4 + 1]);
        for i in 0..10 {
            c.insert(("f".into(), i * 256), chunk.clone());
            assert!(c.bytes <= CACHE_BYTES);
        }
        assert_eq!(c.ranges.len(), 3);
        assert!(c.ranges.contains_key(&("f".to_string(), 9 * 256)));
    }

    /// DejaVu Sans comes with Debian's fonts-dejavu-core (scripts/lib.sh installs it).
    #[test]
    fn renders_latin_digits_from_a_system_font() {
        let name = "DejaVu Sans Book";
        if !names().iter().any(|n| n == name) {
            panic!("{name} is not installed: apt-get install fonts-dejavu-core (scripts/lib.sh ensure_web)");
        }
        let bytes = range(&format!("{name},No Such Font"), 0).unwrap();
        let glyphs = Glyphs::decode(bytes).unwrap();
        let stack = &glyphs.stacks[0];
        assert_eq!(stack.range, "0-255");
        assert!(stack.glyphs.iter().any(|g| g.id == '7' as u32 && g.bitmap.as_ref().is_some_and(|b| !b.is_empty())));
        assert!(matches!(range("No Such Font", 0), Err(GlyphError::UnknownFont(_))));
    }
}
