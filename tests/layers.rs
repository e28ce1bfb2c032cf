//! The house rule, checked: a module imports only from its own layer or below
//! (`commands → flow → domain → base`, see the crate root's `//!` map). A new import that
//! points up fails here, naming the file and line.

use std::path::{Path, PathBuf};

/// Layer of each top-level module (1 = top). `ui::format` (numbers, sizes, ages, shell
/// quoting: pure text) is base, usable by every layer; the rest of `ui` talks to the
/// user and is flow.
fn layer(module: &str, submodule: Option<&str>) -> Option<u8> {
    Some(match (module, submodule) {
        ("ui", Some("format")) => 4,
        ("cli" | "commands", _) => 1,
        ("flow" | "error" | "ui", _) => 2,
        ("plan" | "restore" | "compare" | "export" | "import" | "retention" | "hooks", _) => 3,
        (
            "git" | "repo" | "db" | "store" | "remote" | "scan" | "config" | "clock" | "env"
            | "proc" | "fsmonitor",
            _,
        ) => 4,
        _ => return None,
    })
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

/// `crate::a::b` paths named on a line, including the `crate::{a, b::c}` form.
fn crate_paths(line: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                found.push(split_path(item.trim()));
            }
        } else {
            found.push(split_path(rest));
        }
    }
    found
}

fn split_path(text: &str) -> (String, Option<String>) {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let first = ident(text);
    let second = text[first.len()..]
        .strip_prefix("::")
        .map(ident)
        .filter(|s| !s.is_empty());
    (first, second)
}

#[test]
fn modules_import_only_from_their_layer_or_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let mut parts = relative.iter().map(|p| p.to_string_lossy().into_owned());
        let first = parts.next().unwrap();
        let module = first.trim_end_matches(".rs").to_string();
        let submodule = parts.next().map(|s| s.trim_end_matches(".rs").to_string());
        let Some(own) = layer(&module, submodule.as_deref()) else {
            continue; // lib.rs, main.rs, bin/, testing.rs
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for (target, sub) in crate_paths(code) {
                if let Some(theirs) = layer(&target, sub.as_deref())
                    && theirs < own
                {
                    violations.push(format!(
                        "src/{}:{}: layer {own} uses crate::{target} (layer {theirs}): {}",
                        relative.display(),
                        number + 1,
                        code.trim()
                    ));
                }
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
fn the_path_reader_sees_grouped_imports() {
    assert_eq!(
        crate_paths("use crate::{flow::Context, ui::format::bytes};"),
        vec![
            ("flow".to_string(), Some("Context".to_string())),
            ("ui".to_string(), Some("format".to_string())),
        ]
    );
    assert_eq!(
        crate_paths("let x = crate::store::parse_snapshot_id(t);"),
        vec![("store".to_string(), Some("parse_snapshot_id".to_string()))]
    );
}
