//! MVT layers written straight to protobuf bytes with prost's wire primitives: a feature costs
//! no allocation of its own (its tags and commands come from the caller's reused buffers) and is
//! encoded once, where building `vector_tile` messages first and encoding them after costs a
//! vector per feature and a second walk over all of them.

use std::borrow::Cow;

use geozero::mvt::TileValue;
use geozero::mvt::tile::GeomType;
use prost::encoding::{WireType, encoded_len_varint};

use super::EXTENT;
use crate::index::PropValue;

// Field numbers of vector_tile.proto (MVT 2.1).
const TILE_LAYERS: u32 = 3;
const LAYER_NAME: u32 = 1;
const LAYER_FEATURES: u32 = 2;
const LAYER_KEYS: u32 = 3;
const LAYER_VALUES: u32 = 4;
const LAYER_EXTENT: u32 = 5;
const LAYER_VERSION: u32 = 15;
const FEATURE_ID: u32 = 1;
const FEATURE_TAGS: u32 = 2;
const FEATURE_TYPE: u32 = 3;
const FEATURE_GEOMETRY: u32 = 4;

/// A property value as the layer's value table keeps it: each variant is one field of the
/// `Value` message, strings borrowed from the records where they can be, numbers by their bits so
/// that equal values share an entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value<'a> {
    Str(Cow<'a, str>),
    Float(u32),
    Double(u64),
    Int(i64),
    Uint(u64),
    Sint(i64),
    Bool(bool),
}

impl From<TileValue> for Value<'_> {
    fn from(v: TileValue) -> Self {
        match v {
            TileValue::Str(s) => Value::Str(s.into()),
            TileValue::Float(f) => Value::Float(f.to_bits()),
            TileValue::Double(f) => Value::Double(f.to_bits()),
            TileValue::Int(n) => Value::Int(n),
            TileValue::Uint(n) => Value::Uint(n),
            TileValue::Sint(n) => Value::Sint(n),
            TileValue::Bool(b) => Value::Bool(b),
        }
    }
}

impl<'a> Value<'a> {
    /// A record's property as a tile value; `None` for a null, which a tile leaves out.
    pub fn of_prop(p: PropValue<'a>) -> Option<Value<'a>> {
        Some(match p {
            PropValue::Str(s) => Value::Str(s.into()),
            PropValue::Owned(s) => Value::Str(s.into()),
            PropValue::Num(n) => Value::Double(n.to_bits()),
            PropValue::Int(n) => Value::Sint(n),
            PropValue::Bool(b) => Value::Bool(b),
            PropValue::Null => return None,
        })
    }

    /// The length of the `Value` message [`Value::encode`] writes.
    fn encoded_len(&self) -> usize {
        use prost::encoding as pe;
        match self {
            Value::Str(s) => 1 + encoded_len_varint(s.len() as u64) + s.len(),
            Value::Float(f) => pe::float::encoded_len(2, &f32::from_bits(*f)),
            Value::Double(f) => pe::double::encoded_len(3, &f64::from_bits(*f)),
            Value::Int(n) => pe::int64::encoded_len(4, n),
            Value::Uint(n) => pe::uint64::encoded_len(5, n),
            Value::Sint(n) => pe::sint64::encoded_len(6, n),
            Value::Bool(b) => pe::bool::encoded_len(7, b),
        }
    }

    /// Appends the `Value` message (field number, wire type and payload of its one field).
    fn encode(&self, buf: &mut Vec<u8>) {
        use prost::encoding as pe;
        match self {
            Value::Str(s) => put_str(1, s, buf),
            Value::Float(f) => pe::float::encode(2, &f32::from_bits(*f), buf),
            Value::Double(f) => pe::double::encode(3, &f64::from_bits(*f), buf),
            Value::Int(n) => pe::int64::encode(4, n, buf),
            Value::Uint(n) => pe::uint64::encode(5, n, buf),
            Value::Sint(n) => pe::sint64::encode(6, n, buf),
            Value::Bool(b) => pe::bool::encode(7, b, buf),
        }
    }
}

/// Appends a varint. prost's own writes through `BufMut` a byte at a time with a capacity check
/// each, which made it a tenth of drawing a tile of unit grids, whose commands are all varints.
#[inline]
fn put_varint(mut v: u64, buf: &mut Vec<u8>) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Appends a field's key: its number and wire type.
#[inline]
fn put_key(field: u32, wire: WireType, buf: &mut Vec<u8>) {
    put_varint(u64::from(field << 3 | wire as u32), buf);
}

/// Appends a string field (prost's own takes a `String`).
fn put_str(field: u32, s: &str, buf: &mut Vec<u8>) {
    put_key(field, WireType::LengthDelimited, buf);
    put_varint(s.len() as u64, buf);
    buf.extend_from_slice(s.as_bytes());
}

/// One encoded MVT layer (the `Layer` message, without its field key in the tile).
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedLayer(Vec<u8>);

impl EncodedLayer {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Builds a layer feature by feature.
pub struct LayerBuilder<'a> {
    name: &'a str,
    features: Vec<u8>,
    count: usize,
    keys: Vec<&'a str>,
    values: hashbrown::HashMap<Value<'a>, u32>,
    encoded_values: Vec<u8>,
}

impl<'a> LayerBuilder<'a> {
    pub fn new(name: &'a str) -> LayerBuilder<'a> {
        LayerBuilder::with_capacity(name, 0)
    }

    /// A builder with room for about `features` features (records carry a few distinct values
    /// each: codes, names, times).
    pub fn with_capacity(name: &'a str, features: usize) -> LayerBuilder<'a> {
        LayerBuilder {
            name,
            features: Vec::with_capacity(features * 32),
            count: 0,
            keys: Vec::new(),
            values: hashbrown::HashMap::with_capacity(features * 2),
            encoded_values: Vec::with_capacity(features * 24),
        }
    }

    /// The index of key `name` in the layer's key table, added on first use.
    pub fn key(&mut self, name: &'a str) -> u32 {
        match self.keys.iter().position(|k| *k == name) {
            Some(i) => i as u32,
            None => {
                self.keys.push(name);
                self.keys.len() as u32 - 1
            }
        }
    }

    /// The index of `value` in the layer's value table (one table for all keys), added on first
    /// use.
    pub fn value(&mut self, value: Value<'a>) -> u32 {
        let encoded = &mut self.encoded_values;
        let next = self.values.len() as u32;
        *self.values.entry(value).or_insert_with_key(|v| {
            put_key(LAYER_VALUES, WireType::LengthDelimited, encoded);
            put_varint(v.encoded_len() as u64, encoded);
            v.encode(encoded);
            next
        })
    }

    /// Appends a feature: its id, its tags (key and value indices, in pairs) and its geometry
    /// commands. A feature without geometry is left out.
    pub fn feature(&mut self, id: Option<u64>, kind: GeomType, tags: &[u32], geometry: &[u32]) {
        if geometry.is_empty() {
            return;
        }
        let packed_len = |xs: &[u32]| xs.iter().map(|&x| encoded_len_varint(x as u64)).sum::<usize>();
        let (tags_len, geom_len) = (packed_len(tags), packed_len(geometry));
        let field = |len: usize| 1 + encoded_len_varint(len as u64) + len;
        let len = id.map_or(0, |id| 1 + encoded_len_varint(id))
            + if tags.is_empty() { 0 } else { field(tags_len) }
            + 1
            + encoded_len_varint(kind as u64)
            + field(geom_len);
        let buf = &mut self.features;
        buf.reserve(len + 4);
        put_key(LAYER_FEATURES, WireType::LengthDelimited, buf);
        put_varint(len as u64, buf);
        if let Some(id) = id {
            put_key(FEATURE_ID, WireType::Varint, buf);
            put_varint(id, buf);
        }
        if !tags.is_empty() {
            put_key(FEATURE_TAGS, WireType::LengthDelimited, buf);
            put_varint(tags_len as u64, buf);
            tags.iter().for_each(|&t| put_varint(t as u64, buf));
        }
        put_key(FEATURE_TYPE, WireType::Varint, buf);
        put_varint(kind as u64, buf);
        put_key(FEATURE_GEOMETRY, WireType::LengthDelimited, buf);
        put_varint(geom_len as u64, buf);
        geometry.iter().for_each(|&c| put_varint(c as u64, buf));
        self.count += 1;
    }

    /// The layer, `None` without features.
    pub fn finish(self) -> Option<EncodedLayer> {
        if self.count == 0 {
            return None;
        }
        let mut out = Vec::with_capacity(self.features.len() + self.encoded_values.len() + 64 * self.keys.len());
        put_str(LAYER_NAME, self.name, &mut out);
        out.extend_from_slice(&self.features);
        for k in &self.keys {
            put_str(LAYER_KEYS, k, &mut out);
        }
        out.extend_from_slice(&self.encoded_values);
        prost::encoding::uint32::encode(LAYER_EXTENT, &EXTENT, &mut out);
        prost::encoding::uint32::encode(LAYER_VERSION, &2, &mut out);
        Some(EncodedLayer(out))
    }
}

/// A whole tile from encoded layers, in order; `None` when there are none.
pub fn encode_tile(layers: Vec<EncodedLayer>) -> Option<Vec<u8>> {
    if layers.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(layers.iter().map(|l| l.len() + 6).sum());
    for l in layers {
        put_key(TILE_LAYERS, WireType::LengthDelimited, &mut out);
        put_varint(l.0.len() as u64, &mut out);
        out.extend_from_slice(&l.0);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use geozero::mvt::{Message, Tile, tile};

    use super::*;

    #[test]
    fn layers_decode_as_prost_built_ones() {
        let mut b = LayerBuilder::new("things");
        let (code, kind) = (b.key("code"), b.key("kind"));
        let (a, n) = (b.value(Value::Str("A1".into())), b.value(Value::Sint(-3)));
        assert_eq!(b.value(Value::Str(Cow::Owned("A1".to_string()))), a, "equal values share an entry");
        let point = [9, 50, 34];
        b.feature(Some(300), GeomType::Point, &[code, a, kind, n], &point);
        b.feature(None, GeomType::Point, &[], &point);
        b.feature(Some(1), GeomType::Point, &[], &[]);
        let (u, d) = (b.value(Value::Uint(7)), b.value(Value::Double(2.5f64.to_bits())));
        b.feature(Some(u64::MAX), GeomType::Point, &[code, u, kind, d], &point);
        let bytes = encode_tile(vec![b.finish().unwrap()]).unwrap();
        let value = |v: tile::Value| v;
        let expected = Tile {
            layers: vec![tile::Layer {
                version: 2,
                name: "things".into(),
                features: vec![
                    tile::Feature {
                        id: Some(300),
                        tags: vec![0, 0, 1, 1],
                        r#type: Some(GeomType::Point as i32),
                        geometry: point.to_vec(),
                    },
                    tile::Feature {
                        id: None,
                        tags: vec![],
                        r#type: Some(GeomType::Point as i32),
                        geometry: point.to_vec(),
                    },
                    tile::Feature {
                        id: Some(u64::MAX),
                        tags: vec![0, 2, 1, 3],
                        r#type: Some(GeomType::Point as i32),
                        geometry: point.to_vec(),
                    },
                ],
                keys: vec!["code".into(), "kind".into()],
                values: vec![
                    value(tile::Value { string_value: Some("A1".into()), ..Default::default() }),
                    value(tile::Value { sint_value: Some(-3), ..Default::default() }),
                    value(tile::Value { uint_value: Some(7), ..Default::default() }),
                    value(tile::Value { double_value: Some(2.5), ..Default::default() }),
                ],
                extent: Some(EXTENT),
            }],
        };
        assert_eq!(Tile::decode(&bytes[..]).unwrap(), expected);
        assert!(LayerBuilder::new("empty").finish().is_none());
    }
}
