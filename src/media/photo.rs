//! What a photo is and says: its type sniffed from the bytes (never from a name or a header),
//! its size, the EXIF time and place a phone or a watermark camera stamped on it, and a
//! thumbnail for lists and popups. Also the other way round, [`stamp`]: a JPEG carrying a time and
//! place, as the simulator's supervisors take them.

use std::io::Cursor;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone, Utc};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::MediaError;

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_PX: u32 = 320;
/// JPEG quality of thumbnails: small files, faces and signs still legible at 320 px.
const THUMBNAIL_QUALITY: u8 = 80;
/// Pixels a photo may have (a 100-megapixel camera; beyond, it is a decompression bomb).
const MAX_PIXELS: u64 = 100_000_000;
/// How far from its end a whole JPEG's end-of-image marker may be (a maker's trailer).
const JPEG_TRAILER: usize = 64 * 1024;
/// Memory one decode may take.
const MAX_ALLOC: u64 = 512 * 1024 * 1024;

/// The image types a case photo may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jpeg,
    Png,
    Webp,
}

impl Kind {
    pub fn content_type(self) -> &'static str {
        match self {
            Kind::Jpeg => "image/jpeg",
            Kind::Png => "image/png",
            Kind::Webp => "image/webp",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Kind::Jpeg => "jpg",
            Kind::Png => "png",
            Kind::Webp => "webp",
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            Kind::Jpeg => ImageFormat::Jpeg,
            Kind::Png => ImageFormat::Png,
            Kind::Webp => ImageFormat::WebP,
        }
    }
}

/// The type of `bytes` by their magic numbers; None for anything else (a GIF, a PDF, a
/// renamed executable).
pub fn sniff(bytes: &[u8]) -> Option<Kind> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Kind::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Kind::Png)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(Kind::Webp)
    } else {
        None
    }
}

/// What a photo says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspected {
    pub kind: Kind,
    /// As displayed (after the EXIF orientation).
    pub width: u32,
    pub height: u32,
    pub taken_at: Option<DateTime<Utc>>,
    /// EXIF GPS position, (lon, lat) in WGS84.
    pub place: Option<(f64, f64)>,
    /// A JPEG at most [`THUMBNAIL_PX`] on its longer side.
    pub thumbnail: Vec<u8>,
}

/// Decodes `bytes` (after [`sniff`]), reads its EXIF and draws its thumbnail. `city` is the
/// offset an EXIF time without its own offset is read in. CPU-bound: call it on a blocking
/// thread.
pub fn inspect(bytes: &[u8], city: FixedOffset) -> Result<Inspected, MediaError> {
    let kind = sniff(bytes).ok_or(MediaError::Unsupported)?;
    // The JPEG decoder paints a cut-off photo grey and carries on; a cut-off upload is refused
    // instead. The end-of-image marker cannot occur in the entropy-coded data (an 0xFF there is
    // stuffed), so one near the end means the photo is whole; cameras append at most a short
    // trailer after it.
    if kind == Kind::Jpeg && !bytes[bytes.len().saturating_sub(JPEG_TRAILER)..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err(MediaError::Invalid("a cut-off JPEG: no end-of-image marker".into()));
    }
    let invalid = |e: image::ImageError| MediaError::Invalid(format!("not a readable {}: {e}", kind.content_type()));
    let mut reader = ImageReader::with_format(Cursor::new(bytes), kind.format());
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(invalid)?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(MediaError::Invalid(format!("{w} x {h} pixels is more than a photo has ({MAX_PIXELS} at most)")));
    }
    let exif = decoder.exif_metadata().ok().flatten().and_then(|raw| exif::Reader::new().read_raw(raw).ok());
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let image = DynamicImage::from_decoder(decoder).map_err(invalid)?;
    let mut thumb = image.thumbnail(THUMBNAIL_PX, THUMBNAIL_PX);
    drop(image);
    thumb.apply_orientation(orientation);
    let (width, height) = match orientation {
        image::metadata::Orientation::Rotate90
        | image::metadata::Orientation::Rotate270
        | image::metadata::Orientation::Rotate90FlipH
        | image::metadata::Orientation::Rotate270FlipH => (h, w),
        _ => (w, h),
    };
    let mut thumbnail = Vec::with_capacity(32 * 1024);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut thumbnail, THUMBNAIL_QUALITY)
        .encode_image(&DynamicImage::ImageRgb8(thumb.to_rgb8()))
        .map_err(|e| MediaError::Invalid(format!("cannot draw a thumbnail: {e}")))?;
    let (taken_at, place) = exif.as_ref().map(|e| (taken_at(e, city), place(e))).unwrap_or_default();
    Ok(Inspected { kind, width, height, taken_at, place, thumbnail })
}

/// The first ASCII value of `tag`.
fn ascii(e: &exif::Exif, tag: exif::Tag) -> Option<&[u8]> {
    match &e.get_field(tag, exif::In::PRIMARY)?.value {
        exif::Value::Ascii(v) => v.first().map(Vec::as_slice),
        _ => None,
    }
}

fn rationals(e: &exif::Exif, tag: exif::Tag) -> Option<Vec<f64>> {
    match &e.get_field(tag, exif::In::PRIMARY)?.value {
        exif::Value::Rational(v) => Some(v.iter().map(|r| r.to_f64()).collect()),
        _ => None,
    }
}

/// When the photo was taken: `DateTimeOriginal` with its `OffsetTimeOriginal`, else in the
/// city's offset (phones write local time), else the GPS time (UTC).
fn taken_at(e: &exif::Exif, city: FixedOffset) -> Option<DateTime<Utc>> {
    let local = ascii(e, exif::Tag::DateTimeOriginal).or_else(|| ascii(e, exif::Tag::DateTime));
    if let Some(mut dt) = local.and_then(|v| exif::DateTime::from_ascii(v).ok()) {
        if let Some(offset) = ascii(e, exif::Tag::OffsetTimeOriginal) {
            let _ = dt.parse_offset(offset);
        }
        let offset = dt.offset.and_then(|m| FixedOffset::east_opt(i32::from(m) * 60)).unwrap_or(city);
        let date = NaiveDate::from_ymd_opt(dt.year.into(), dt.month.into(), dt.day.into())?;
        let naive = date.and_hms_opt(dt.hour.into(), dt.minute.into(), dt.second.into())?;
        return offset.from_local_datetime(&naive).single().map(|t| t.with_timezone(&Utc));
    }
    let date = std::str::from_utf8(ascii(e, exif::Tag::GPSDateStamp)?).ok()?;
    let date = NaiveDate::parse_from_str(date.trim_end_matches('\0'), "%Y:%m:%d").ok()?;
    let hms = rationals(e, exif::Tag::GPSTimeStamp)?;
    let secs = hms.first()? * 3600.0 + hms.get(1)? * 60.0 + hms.get(2)?;
    Some(Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?) + chrono::Duration::milliseconds((secs * 1000.0) as i64))
}

/// The EXIF GPS position, (lon, lat), when it is a place on Earth.
fn place(e: &exif::Exif) -> Option<(f64, f64)> {
    let degrees = |tag, reference, negative: &[u8]| -> Option<f64> {
        let dms = rationals(e, tag)?;
        let d = dms.first()? + dms.get(1).unwrap_or(&0.0) / 60.0 + dms.get(2).unwrap_or(&0.0) / 3600.0;
        let sign = if ascii(e, reference).is_some_and(|r| r.starts_with(negative)) { -1.0 } else { 1.0 };
        Some(sign * d)
    };
    let lat = degrees(exif::Tag::GPSLatitude, exif::Tag::GPSLatitudeRef, b"S")?;
    let lon = degrees(exif::Tag::GPSLongitude, exif::Tag::GPSLongitudeRef, b"W")?;
    (lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0 && (lat, lon) != (0.0, 0.0))
        .then_some((lon, lat))
}

/// A degree as EXIF writes it: degrees, minutes and seconds (in hundredths).
fn dms(v: f64) -> Vec<exif::Rational> {
    let v = v.abs();
    let d = v.floor();
    let m = ((v - d) * 60.0).floor();
    let s = ((v - d) * 60.0 - m) * 60.0;
    vec![(d as u32, 1).into(), (m as u32, 1).into(), ((s * 100.0).round() as u32, 100).into()]
}

/// A JPEG of `image` stamped with the time and place it was taken (EXIF `DateTimeOriginal` and
/// `OffsetTimeOriginal` in `city`, and GPS), as a watermark camera or a phone writes them: what
/// the simulator's supervisors upload, and the tests' photos.
pub fn stamp(image: &DynamicImage, at: DateTime<Utc>, place: Option<(f64, f64)>, city: FixedOffset) -> Vec<u8> {
    use exif::{Field, In, Tag, Value};
    let local = at.with_timezone(&city);
    let offset = {
        let m = city.local_minus_utc() / 60;
        format!("{}{:02}:{:02}", if m < 0 { '-' } else { '+' }, m.abs() / 60, m.abs() % 60)
    };
    let ascii = |tag, s: String| Field { tag, ifd_num: In::PRIMARY, value: Value::Ascii(vec![s.into_bytes()]) };
    let mut fields = vec![
        ascii(Tag::DateTimeOriginal, local.format("%Y:%m:%d %H:%M:%S").to_string()),
        ascii(Tag::OffsetTimeOriginal, offset),
    ];
    if let Some((lon, lat)) = place {
        fields.push(ascii(Tag::GPSLatitudeRef, if lat < 0.0 { "S" } else { "N" }.into()));
        fields.push(Field { tag: Tag::GPSLatitude, ifd_num: In::PRIMARY, value: Value::Rational(dms(lat)) });
        fields.push(ascii(Tag::GPSLongitudeRef, if lon < 0.0 { "W" } else { "E" }.into()));
        fields.push(Field { tag: Tag::GPSLongitude, ifd_num: In::PRIMARY, value: Value::Rational(dms(lon)) });
    }
    let mut writer = exif::experimental::Writer::new();
    for f in &fields {
        writer.push_field(f);
    }
    let mut tiff = Cursor::new(Vec::new());
    writer.write(&mut tiff, false).expect("EXIF of a few ASCII and rational fields writes");
    let mut out = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
    image::ImageEncoder::set_exif_metadata(&mut encoder, tiff.into_inner()).expect("JPEG takes EXIF");
    encoder.encode_image(&DynamicImage::ImageRgb8(image.to_rgb8())).expect("an RGB image encodes as JPEG");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
        }))
    }

    #[test]
    fn types_are_sniffed_from_the_bytes() {
        let jpeg = stamp(&picture(8, 8), Utc::now(), None, crate::model::city_tz());
        assert_eq!(sniff(&jpeg), Some(Kind::Jpeg));
        let mut png = Vec::new();
        picture(8, 8).write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        assert_eq!(sniff(&png), Some(Kind::Png));
        let mut webp = Vec::new();
        picture(8, 8).write_to(&mut Cursor::new(&mut webp), ImageFormat::WebP).unwrap();
        assert_eq!(sniff(&webp), Some(Kind::Webp));
        for other in [&b"GIF89a......"[..], b"%PDF-1.7", b"", b"\xFF\xD8"] {
            assert_eq!(sniff(other), None);
        }
    }

    #[test]
    fn a_stamped_photo_reads_back_its_time_and_place() {
        let city = crate::model::city_tz();
        let at = DateTime::parse_from_rfc3339("2026-12-04T03:04:05Z").unwrap().with_timezone(&Utc);
        let jpeg = stamp(&picture(1000, 600), at, Some((88.8811, 29.2678)), city);
        let seen = inspect(&jpeg, city).unwrap();
        assert_eq!((seen.kind, seen.width, seen.height), (Kind::Jpeg, 1000, 600));
        assert_eq!(seen.taken_at, Some(at));
        let (lon, lat) = seen.place.unwrap();
        assert!((lon - 88.8811).abs() < 1e-5 && (lat - 29.2678).abs() < 1e-5, "{lon} {lat}");
        let thumb = image::load_from_memory(&seen.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (320, 192));
        // A photo without EXIF has neither; a broken one is refused.
        let mut png = Vec::new();
        picture(20, 10).write_to(&mut Cursor::new(&mut png), ImageFormat::Png).unwrap();
        let seen = inspect(&png, city).unwrap();
        assert_eq!((seen.taken_at, seen.place, seen.width), (None, None, 20));
        assert!(matches!(inspect(&jpeg[..jpeg.len() / 3], city), Err(MediaError::Invalid(_))));
        assert!(matches!(inspect(b"GIF89a", city), Err(MediaError::Unsupported)));
    }
}
