//! The demo city's departments: the city bodies of `data/departments.csv`, one government
//! per district, one office per street, and filler enterprises up to the requested count.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::dict::department_seeds;
use super::uscc::{BODY_CHARS, make_uscc};
use crate::model::{Department, Str};

/// Prefecture-level GB/T 2260 code of Shigatse, the region of city-wide bodies' credit codes.
const CITY_REGION: &str = "540200";

/// Filler enterprises: (name suffix, maintenance tag).
const FILLER_TRADES: [(&str, &str); 7] = [
    ("市政工程养护有限公司", "municipal"),
    ("环境服务有限公司", "sanitation"),
    ("绿化工程有限公司", "greening"),
    ("物业服务有限公司", "property"),
    ("建筑工程有限公司", "construction"),
    ("广告传媒有限公司", "advertising"),
    ("停车服务有限公司", "parking"),
];

const FILLER_WORDS: [&str; 16] = [
    "吉祥", "雪域", "珠峰", "年楚", "扎西", "格桑", "圣城", "高原", "雅江", "德吉", "康桑", "白玛", "宗山", "曲水",
    "拉孜", "江当",
];

pub(super) struct Depts {
    pub list: Vec<Department>,
    /// Index into `list` by the key used in the data files.
    pub by_key: BTreeMap<&'static str, u32>,
    /// Enterprises by maintenance tag.
    pub by_tag: BTreeMap<&'static str, Vec<u32>>,
    pub district_gov: Vec<u32>,
    pub street_office: Vec<u32>,
}

impl Depts {
    pub fn code(&self, i: u32) -> &Str {
        &self.list[i as usize].code
    }

    pub fn key(&self, key: &str) -> u32 {
        *self.by_key.get(key).unwrap_or_else(|| panic!("unknown department key {key:?} in data/"))
    }
}

struct CodeMaker<'r> {
    rng: &'r mut ChaCha8Rng,
    seen: BTreeSet<String>,
}

impl CodeMaker<'_> {
    /// A fresh credit code: agencies and institutions get an all-digit organisation code,
    /// enterprises the "MA" codes issued since 2015.
    fn make(&mut self, reg: &str, region: &str) -> Str {
        loop {
            let mut body = String::with_capacity(8);
            if reg.starts_with('9') {
                body.push_str("MA");
                for _ in 0..6 {
                    body.push(BODY_CHARS[self.rng.random_range(0..BODY_CHARS.len())] as char);
                }
            } else {
                for _ in 0..8 {
                    body.push(char::from(b'0' + self.rng.random_range(0..10u8)));
                }
            }
            let code = make_uscc(reg, region, &body);
            if self.seen.insert(code.clone()) {
                return code.into();
            }
        }
    }
}

/// `districts`: (code, name); `streets`: (code, name, district index).
pub(super) fn build(
    target: usize,
    districts: &[(Str, Str)],
    streets: &[(Str, Str, u32)],
    rng: &mut ChaCha8Rng,
) -> Depts {
    let mut mk = CodeMaker { rng, seen: BTreeSet::new() };
    let mut d = Depts {
        list: Vec::new(),
        by_key: BTreeMap::new(),
        by_tag: BTreeMap::new(),
        district_gov: Vec::new(),
        street_office: Vec::new(),
    };
    for s in department_seeds() {
        let i = d.list.len() as u32;
        d.list.push(Department {
            code: mk.make(s.reg, CITY_REGION),
            name: s.name.into(),
            kind: s.kind.into(),
            region_code: None,
        });
        assert!(d.by_key.insert(s.key, i).is_none(), "duplicate department key {}", s.key);
        if !s.tag.is_empty() {
            d.by_tag.entry(s.tag).or_default().push(i);
        }
    }
    for (code, name) in districts {
        d.district_gov.push(d.list.len() as u32);
        d.list.push(Department {
            code: mk.make("11", code),
            name: format!("{name}人民政府").into(),
            kind: "district".into(),
            region_code: Some(code.clone()),
        });
    }
    for (code, name, di) in streets {
        d.street_office.push(d.list.len() as u32);
        let (dcode, dname) = &districts[*di as usize];
        d.list.push(Department {
            code: mk.make("11", dcode),
            name: format!("{dname}{name}办事处").into(),
            kind: "street".into(),
            region_code: Some(code.clone()),
        });
    }
    let mut k = 0;
    while d.list.len() < target {
        let (suffix, tag) = FILLER_TRADES[k % FILLER_TRADES.len()];
        let round = k / FILLER_TRADES.len();
        let word = FILLER_WORDS[round % FILLER_WORDS.len()];
        let name = if round < FILLER_WORDS.len() {
            format!("日喀则市{word}{suffix}")
        } else {
            format!("日喀则市{word}{}{suffix}", super::names::numeral(round / FILLER_WORDS.len() + 1))
        };
        let region = if districts.is_empty() || k % 3 == 0 {
            CITY_REGION.into()
        } else {
            districts[k % districts.len()].0.clone()
        };
        let i = d.list.len() as u32;
        d.list.push(Department {
            code: mk.make("91", &region),
            name: name.into(),
            kind: "enterprise".into(),
            region_code: None,
        });
        d.by_tag.entry(tag).or_default().push(i);
        k += 1;
    }
    d
}
