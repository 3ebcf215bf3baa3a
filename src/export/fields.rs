//! Field names: the types exported properties are written as, the 10-character names a
//! Shapefile's dBASE table allows, and which source field feeds each column on import.

use std::collections::HashMap;

use gdal::vector::OGRFieldType;

/// How an exported property is typed in the file: dates as dates and instants as date-times, so
/// QGIS and ArcGIS can filter on them; counts and measures as numbers; the rest text.
pub fn field_type(name: &str) -> OGRFieldType::Type {
    match name {
        "id" | "version" => OGRFieldType::OFTInteger64,
        "area_m2" | "value" => OGRFieldType::OFTReal,
        "stale" => OGRFieldType::OFTInteger,
        n if n.ends_with("_date") => OGRFieldType::OFTDate,
        n if n.ends_with("_at") => OGRFieldType::OFTDateTime,
        _ => OGRFieldType::OFTString,
    }
}

/// dBASE field names hold at most 10 bytes.
pub const DBF_NAME_MAX: usize = 10;

/// Shortens names to at most 10 characters, predictably, so the same layer always gets the
/// same names: a name that fits is kept; otherwise the longest underscore-separated word is cut
/// by one letter at a time (ties: the first such word) until the joined name fits, keeping each
/// word's first letter, and if that is not enough the underscores go and the tail is cut.
/// A name that then repeats an earlier one gets a numeric suffix (`owner_dep2`).
pub fn shorten(names: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let mut short = shorten_one(name);
        let mut n = 1;
        while out.iter().any(|o| o.eq_ignore_ascii_case(&short)) {
            n += 1;
            let suffix = n.to_string();
            let keep: String = shorten_one(name).chars().take(DBF_NAME_MAX - suffix.len()).collect();
            short = format!("{keep}{suffix}");
        }
        out.push(short);
    }
    out
}

fn shorten_one(name: &str) -> String {
    if name.len() <= DBF_NAME_MAX {
        return name.to_string();
    }
    let mut words: Vec<String> = name.split('_').map(str::to_string).collect();
    let joined_len = |w: &[String]| w.iter().map(String::len).sum::<usize>() + w.len() - 1;
    while joined_len(&words) > DBF_NAME_MAX {
        let (i, longest) = words.iter().enumerate().rev().max_by_key(|(_, w)| w.len()).expect("a word");
        if longest.len() <= 1 {
            break;
        }
        words[i].pop();
    }
    let joined = words.join("_");
    if joined.len() <= DBF_NAME_MAX { joined } else { words.concat().chars().take(DBF_NAME_MAX).collect() }
}

/// Source-field names recognised for each target column, lower case. Besides the column's own
/// name: the Chinese attribute names of GB/T 30428 tables and the English abbreviations common
/// in survey deliveries (ObjID, ObjName, DeptCode1-3, BGID, ObjState, ORDate, CHDate, DataSource).
pub fn default_sources(column: &str) -> &'static [&'static str] {
    match column {
        "code" => &["code", "objid", "obj_id", "bgid", "编码", "标识码", "部件编码", "网格编码", "代码"],
        "name" => &["name", "objname", "obj_name", "名称", "部件名称", "网格名称"],
        "district_code" => &["district_code", "district", "qxdm", "区县编码", "区县代码"],
        "street_code" => &["street_code", "street", "jddm", "街道编码", "街道代码"],
        "community_code" => &["community_code", "community", "sqdm", "社区编码", "社区代码"],
        "grid_code" => &["grid_code", "grid", "bgid", "网格编码", "单元网格编码", "所在网格"],
        "class_code" => &["class_code", "class", "lbdm", "类别", "小类代码", "类别代码"],
        "status" => &["status", "objstate", "obj_state", "状态", "部件状态"],
        "competent_dept" => &["competent_dept", "deptcode1", "deptname1", "主管部门", "主管部门代码"],
        "owner_dept" => &["owner_dept", "deptcode2", "deptname2", "权属单位", "权属单位代码"],
        "maint_dept" => &["maint_dept", "deptcode3", "deptname3", "养护单位", "养护单位代码"],
        "survey_date" => &["survey_date", "ordate", "or_date", "初始日期", "普查日期"],
        "change_date" => &["change_date", "chdate", "ch_date", "变更日期"],
        "source" => &["source", "datasource", "data_source", "数据来源"],
        "kind" => &["kind", "type", "类型", "种类"],
        "component_code" => &["component_code", "component", "部件编码", "关联部件"],
        "description" => &["description", "desc", "问题描述", "描述"],
        "urgency" => &["urgency", "紧急程度"],
        "reported_at" => &["reported_at", "report_time", "上报时间"],
        "closed_at" => &["closed_at", "close_time", "结案时间"],
        _ => &[],
    }
}

/// Which source field feeds each target column: `--field column=source` overrides first, then
/// the defaults, matched case-insensitively against the source's fields. Also returns the
/// overrides that name a field the source does not have, so the user hears of a typo.
pub fn resolve(
    columns: &[&'static str],
    source_fields: &[String],
    overrides: &[(String, String)],
) -> (HashMap<&'static str, usize>, Vec<String>) {
    let find = |wanted: &str| source_fields.iter().position(|f| f.trim().eq_ignore_ascii_case(wanted.trim()));
    let mut out = HashMap::new();
    let mut problems = Vec::new();
    for (target, source) in overrides {
        match (columns.iter().find(|c| **c == target.as_str()), find(source)) {
            (Some(c), Some(i)) => {
                out.insert(*c, i);
            }
            (None, _) => problems
                .push(format!("--field {target}={source}: no column {target:?} (columns: {})", columns.join(", "))),
            (_, None) => problems.push(format!(
                "--field {target}={source}: the source has no field {source:?} (fields: {})",
                source_fields.join(", ")
            )),
        }
    }
    for c in columns {
        if out.contains_key(c) {
            continue;
        }
        let candidates = std::iter::once(*c).chain(default_sources(c).iter().copied());
        if let Some(i) = candidates.filter_map(find).next() {
            out.insert(*c, i);
        }
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortened_names_fit_dbase_and_stay_apart() {
        let names =
            ["code", "competent_dept", "community_code", "owner_dept", "maint_dept", "survey_date", "dispatch_due_at"];
        let short = shorten(&names);
        assert_eq!(short[0], "code");
        assert_eq!(short[3], "owner_dept", "ten characters fit");
        assert!(short.iter().all(|s| s.len() <= DBF_NAME_MAX), "{short:?}");
        let mut uniq = short.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), short.len(), "{short:?}");
        assert_eq!(shorten(&names), short, "the same every time");
        assert_eq!(shorten(&["survey_date"]), ["surve_date"]);
        assert_eq!(shorten(&["abcdefghijk_x", "abcdefghijk_y"]), ["abcdefgh_x", "abcdefgh_y"]);
        assert_eq!(shorten(&["reported_at_one", "reported_at_two"]), ["rep_at_one", "rep_at_two"]);
        assert_eq!(shorten(&["aaaaaaaaaaaa", "aaaaaaaaaaab"]), ["aaaaaaaaaa", "aaaaaaaaa2"]);
    }

    #[test]
    fn overrides_win_and_defaults_match_any_case() {
        let fields: Vec<String> = ["OBJID", "ObjName", "BGID", "类别"].iter().map(|s| s.to_string()).collect();
        let (m, problems) = resolve(&["code", "name", "grid_code", "class_code"], &fields, &[]);
        assert!(problems.is_empty());
        assert_eq!((m["code"], m["name"], m["grid_code"], m["class_code"]), (0, 1, 2, 3));
        let (m, problems) =
            resolve(&["code", "name"], &fields, &[("code".into(), "bgid".into()), ("nmae".into(), "x".into())]);
        assert_eq!(m["code"], 2);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}
