//! The grid hierarchy (district > street > community > unit grid), its codes, and the field
//! app's question: which unit grid is this point in, and who is responsible there.

use serde::Serialize;

use crate::index::CityIndex;
use crate::model::{Grid, Str};

/// A unit grid code (GB/T 30428.1): 14 digits (6+3+3+2) or 15 digits (6+3+3+3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GridCode(Str);

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GridError {
    #[error("unit grid code {0:?} must be 14 or 15 digits")]
    BadCode(String),
}

impl GridCode {
    pub fn parse(s: &str) -> Result<Self, GridError> {
        if (s.len() == 14 || s.len() == 15) && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(GridCode(s.into()))
        } else {
            Err(GridError::BadCode(s.to_string()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The 6-digit district (区县) prefix.
    pub fn district(&self) -> &str {
        &self.0[..6]
    }
    /// The 9-digit street (街道) prefix.
    pub fn street(&self) -> &str {
        &self.0[..9]
    }
    /// The 12-digit community (社区) prefix.
    pub fn community(&self) -> &str {
        &self.0[..12]
    }
}

/// A code and name pair for one level of the hierarchy.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Named {
    pub code: Str,
    pub name: Str,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GridInfo {
    pub code: Str,
    pub name: Str,
    pub area_m2: f64,
}

/// A department answering for the place, narrowest territory first.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Responsible {
    pub dept_code: Str,
    pub dept_name: Str,
    pub role: Str,
    /// The region code through which the department is responsible.
    pub via: Str,
}

/// Everything a field app needs to know about where it stands.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Location {
    pub grid: GridInfo,
    pub community: Option<Named>,
    pub street: Option<Named>,
    pub district: Option<Named>,
    pub responsible: Vec<Responsible>,
}

/// What locate needs of a grid, copied out so the grids lock is released before the parents are
/// looked up: no request ever holds two layer locks at once, so no lock order can deadlock.
#[derive(Debug, Clone)]
pub struct GridHead {
    pub info: GridInfo,
    pub community_code: Str,
}

impl GridHead {
    pub fn of(g: &Grid) -> Self {
        GridHead {
            info: GridInfo { code: g.code.clone(), name: g.name.clone(), area_m2: g.area_m2 },
            community_code: g.community_code.clone(),
        }
    }
}

/// Which grid contains the point (CGCS2000 lon/lat), and its parents and responsible parties.
/// `None` when the point is in no unit grid.
pub fn locate(index: &CityIndex, lon: f64, lat: f64) -> Option<Location> {
    let head = index.grids.read().at_point(lon, lat).map(GridHead::of)?;
    Some(describe(index, head))
}

/// Locates many points, in input order.
pub fn locate_many(index: &CityIndex, points: &[(f64, f64)]) -> Vec<Option<Location>> {
    let heads: Vec<Option<GridHead>> = {
        let grids = index.grids.read();
        points.iter().map(|&(lon, lat)| grids.at_point(lon, lat).map(GridHead::of)).collect()
    };
    heads.into_iter().map(|h| h.map(|h| describe(index, h))).collect()
}

/// Just the grid code for a point: the hot path for benchmarks and for stamping records.
pub fn grid_code_at(index: &CityIndex, lon: f64, lat: f64) -> Option<Str> {
    index.grids.read().at_point(lon, lat).map(|g| g.code.clone())
}

/// The hierarchy and responsible parties of one grid. Takes each layer lock on its own.
pub fn describe(index: &CityIndex, head: GridHead) -> Location {
    let named = |code: &Str, name: &Str| Named { code: code.clone(), name: name.clone() };
    let community =
        index.communities.read().get(&head.community_code).map(|c| (named(&c.code, &c.name), c.street_code.clone()));
    let street = community
        .as_ref()
        .and_then(|(_, sc)| index.streets.read().get(sc).map(|s| (named(&s.code, &s.name), s.district_code.clone())));
    let district = street.as_ref().and_then(|(_, dc)| index.districts.read().get(dc).map(|d| named(&d.code, &d.name)));

    // Territory responsibilities from the narrowest region outwards: the grid itself, its
    // community, street, district.
    let dict = index.dict.read();
    let mut responsible = Vec::new();
    let regions = [
        Some(&head.info.code),
        community.as_ref().map(|c| &c.0.code),
        street.as_ref().map(|s| &s.0.code),
        district.as_ref().map(|d| &d.code),
    ];
    for region in regions.into_iter().flatten() {
        for r in dict.by_target.get(region).into_iter().flatten().filter(|r| r.scope == "territory") {
            let dept_name = dict.departments.get(&r.dept_code).map(|d| d.name.clone()).unwrap_or_default();
            responsible.push(Responsible {
                dept_code: r.dept_code.clone(),
                dept_name,
                role: r.role.clone(),
                via: region.clone(),
            });
        }
    }
    Location { grid: head.info, community: community.map(|c| c.0), street: street.map(|s| s.0), district, responsible }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_codes_parse_and_derive_parents() {
        let g = GridCode::parse("54020200100101").unwrap();
        assert_eq!((g.district(), g.street(), g.community()), ("540202", "540202001", "540202001001"));
        let g15 = GridCode::parse("540202001001012").unwrap();
        assert_eq!(g15.community(), "540202001001");
        assert!(GridCode::parse("5402020010010").is_err());
        assert!(GridCode::parse("54020200100101x").is_err());
        assert!(GridCode::parse("5402020010010123").is_err());
    }
}
