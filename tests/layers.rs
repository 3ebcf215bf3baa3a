//! The layers of `../shared/design.md` hold: every `crate::` reference outside tests points to a
//! module of the same or a lower layer, and no top-level modules form a cycle. A new module must
//! be given its layer here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Lowest first; a module may use its own layer and those below it.
const LAYERS: &[&[&str]] = &[
    &["geo", "model"],
    &["store", "index", "catalog"],
    &["tiles", "grids", "auth", "metrics"],
    &["events"],
    &["cases", "sensors", "staff", "media"],
    &["analysis", "export", "demo", "mqtt", "linkage"],
    &["http", "config"],
    &["server"],
];

/// The text of a Rust file without its `#[cfg(test)]` items and line comments.
fn without_tests(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            // Skip the item: to the end of its braces, or a one-line `mod x;`.
            let mut depth = 0i32;
            let mut started = false;
            for l in lines.by_ref() {
                depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
                started |= l.contains('{');
                if (started && depth <= 0) || (!started && l.trim_end().ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        out.push_str(line.split("//").next().unwrap_or(""));
        out.push('\n');
    }
    out
}

/// The top-level modules each `crate::` path in `text` names (`crate::a::b`, `crate::{a, b::c}`).
fn references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(group.split(',').map(|p| ident(p.trim())).filter(|s| !s.is_empty()));
        } else {
            out.insert(ident(rest));
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn imports_point_down_and_no_modules_form_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer_of: BTreeMap<&str, usize> =
        LAYERS.iter().enumerate().flat_map(|(i, l)| l.iter().map(move |m| (*m, i))).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        if name == "main" || name == "lib" {
            continue;
        }
        assert!(layer_of.contains_key(name.as_str()), "src/{name}: give the module its layer in tests/layers.rs");
        let mut files = Vec::new();
        if p.is_dir() {
            rust_files(&p, &mut files)
        } else {
            files.push(p.clone())
        }
        for f in files {
            let text = without_tests(&std::fs::read_to_string(&f).unwrap());
            for r in references(&text) {
                if r != name && layer_of.contains_key(r.as_str()) {
                    edges.entry(name.clone()).or_default().insert(r);
                }
            }
        }
    }
    let mut upward = Vec::new();
    for (from, tos) in &edges {
        for to in tos {
            if layer_of[to.as_str()] > layer_of[from.as_str()] {
                upward.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports that point up the layers: {upward:?}");
    // Within a layer, no cycle: a depth-first search for a back edge.
    fn visit<'a>(
        m: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) {
        state.insert(m, 1);
        path.push(m);
        for to in edges.get(m).into_iter().flatten() {
            match state.get(to.as_str()) {
                Some(1) => panic!("module cycle: {} -> {to}", path.join(" -> ")),
                Some(_) => {}
                None => visit(to, edges, state, path),
            }
        }
        path.pop();
        state.insert(m, 2);
    }
    let mut state = BTreeMap::new();
    for m in edges.keys() {
        if !state.contains_key(m.as_str()) {
            visit(m, &edges, &mut state, &mut Vec::new());
        }
    }
}

#[test]
fn the_checker_sees_references_and_skips_tests() {
    let text =
        "use crate::{a, b::c};\nfn f() { crate::d::g(); } // crate::e\n#[cfg(test)]\nmod tests {\n use crate::z;\n}\n";
    let refs = references(&without_tests(text));
    assert_eq!(refs.into_iter().collect::<Vec<_>>(), ["a", "b", "d"]);
}
