//! The house rule, checked: a module imports only from its own layer or below. The
//! layers are read from the one map, `docs/architecture.md` ("## Layers"), so the map and
//! this check cannot disagree. A new import that points up fails here, naming the file
//! and line; so does a top-level module the map does not name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level entries of `src/` outside the layers: the crate roots, the two small
/// programs, and the test harness.
const OUTSIDE_THE_LAYERS: &[&str] = &["lib", "main", "bin", "testing"];

/// The layer of each module named in the map's table: `module` or `module::sub` → 1–4.
fn layer_map() -> BTreeMap<String, u8> {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/architecture.md"))
            .expect("docs/architecture.md holds the layer map");
    let section = doc
        .split("\n## Layers")
        .nth(1)
        .expect("docs/architecture.md has a \"## Layers\" section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut map = BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (Some(layer), Some(modules)) = (cells.get(1), cells.get(2)) else {
            continue;
        };
        let Some(number) = layer
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u8>().ok())
        else {
            continue; // the header and its rule
        };
        for module in modules.split(',') {
            map.insert(module.trim().trim_matches('`').to_string(), number);
        }
    }
    assert!(
        map.values().any(|l| *l == 1) && map.values().any(|l| *l == 4),
        "the layer table of docs/architecture.md was not read: {map:?}"
    );
    map
}

/// The layer of `module` (and its submodule, which may have a row of its own).
fn layer(map: &BTreeMap<String, u8>, module: &str, submodule: Option<&str>) -> Option<u8> {
    submodule
        .and_then(|sub| map.get(&format!("{module}::{sub}")))
        .or_else(|| map.get(module))
        .copied()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without `//` comments (doc links name modules too), newlines kept so
/// that offsets still give line numbers.
fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The text of the `{…}` group `text` starts with (without its braces), nested groups
/// included; the rest when it is never closed.
fn group(text: &str) -> &str {
    let mut depth = 0;
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &text[1..at];
                }
            }
            _ => {}
        }
    }
    &text[1..]
}

/// The items of a group, split at its top-level commas.
fn items(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(group[start..at].trim());
                start = at + 1;
            }
            _ => {}
        }
    }
    items.push(group[start..].trim());
    items.into_iter().filter(|i| !i.is_empty()).collect()
}

/// `(module, submodule)` of the path that `text` starts with (after `crate::`), and of
/// every path in a group there: `a::b`, `{a::b, c}`, `a::{b, c::d}`, over any lines.
fn paths_at(text: &str) -> Vec<(String, Option<String>)> {
    if text.starts_with('{') {
        return items(group(text)).into_iter().flat_map(paths_at).collect();
    }
    let module = ident(text);
    let rest = text[module.len()..].trim_start();
    let Some(rest) = rest.strip_prefix("::") else {
        return vec![(module.to_string(), None)];
    };
    let rest = rest.trim_start();
    if rest.starts_with('{') {
        return items(group(rest))
            .into_iter()
            .map(|item| (module.to_string(), Some(ident(item).to_string())))
            .collect();
    }
    let sub = ident(rest);
    vec![(
        module.to_string(),
        (!sub.is_empty()).then(|| sub.to_string()),
    )]
}

/// Every `crate::` path in a source text, with the line it starts on.
fn crate_paths(text: &str) -> Vec<(usize, String, Option<String>)> {
    let code = without_comments(text);
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let line = code[..at].matches('\n').count() + 1;
        for (module, sub) in paths_at(code[at + "crate::".len()..].trim_start()) {
            found.push((line, module, sub));
        }
    }
    found
}

#[test]
fn modules_import_only_from_their_layer_or_below() {
    let map = layer_map();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let mut parts = relative.iter().map(|p| p.to_string_lossy().into_owned());
        let module = parts.next().unwrap().trim_end_matches(".rs").to_string();
        let submodule = parts.next().map(|s| s.trim_end_matches(".rs").to_string());
        if OUTSIDE_THE_LAYERS.contains(&module.as_str()) {
            continue;
        }
        let own = layer(&map, &module, submodule.as_deref()).unwrap_or_else(|| {
            panic!("src/{} belongs to no layer: add `{module}` to the table in docs/architecture.md (\"## Layers\")", relative.display())
        });
        let text = std::fs::read_to_string(file).unwrap();
        for (line, target, sub) in crate_paths(&text) {
            if let Some(theirs) = layer(&map, &target, sub.as_deref())
                && theirs < own
            {
                violations.push(format!(
                    "src/{}:{line}: layer {own} uses crate::{target}{} (layer {theirs})",
                    relative.display(),
                    sub.map(|s| format!("::{s}")).unwrap_or_default()
                ));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that point up a layer:\n{}",
        violations.join("\n")
    );
}

#[test]
fn every_top_level_module_is_on_the_map() {
    let map = layer_map();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut unknown = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let module = name.trim_end_matches(".rs");
        if !OUTSIDE_THE_LAYERS.contains(&module) && !map.contains_key(module) {
            unknown.push(name);
        }
    }
    assert!(
        unknown.is_empty(),
        "not in docs/architecture.md's layer table: {unknown:?}"
    );
}

#[test]
fn the_path_reader_sees_grouped_wrapped_and_nested_imports() {
    let paths = |text: &str| -> Vec<(String, Option<String>)> {
        crate_paths(text)
            .into_iter()
            .map(|(_, module, sub)| (module, sub))
            .collect()
    };
    let pair = |m: &str, s: Option<&str>| (m.to_string(), s.map(str::to_string));
    assert_eq!(
        paths("use crate::{flow::Context, ui::format::bytes};"),
        vec![pair("flow", Some("Context")), pair("ui", Some("format"))]
    );
    assert_eq!(
        paths("let x = crate::store::parse_snapshot_id(t);"),
        vec![pair("store", Some("parse_snapshot_id"))]
    );
    assert_eq!(
        paths("use crate::{\n    commands,\n    flow::{self, Context},\n};"),
        vec![
            pair("commands", None),
            pair("flow", Some("self")),
            pair("flow", Some("Context")),
        ]
    );
    assert_eq!(
        paths("use crate::ui::{\n    Ui,\n    format::bytes,\n};"),
        vec![pair("ui", Some("Ui")), pair("ui", Some("format"))]
    );
    let lines: Vec<usize> = crate_paths("// crate::flow in a comment\n\nuse crate::{\n  a,\n};")
        .into_iter()
        .map(|(line, ..)| line)
        .collect();
    assert_eq!(
        lines,
        vec![3],
        "comments are skipped, the line is where the path starts"
    );
}
