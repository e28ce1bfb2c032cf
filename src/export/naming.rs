//! Names of what an export writes: `<out>/<database>/<snapshot time>/` directories and the
//! `<table stem>.parquet` / `.jsonl[.gz|.zst]` files in them, and reading the table name
//! back from a file name.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::Compression;
use crate::store::SnapshotInfo;

/// Longest file stem written; longer ones are cut and get a hash (file systems allow 255
/// bytes per name, and the extension needs room).
const MAX_STEM_BYTES: usize = 180;

/// The extension of Parquet files, without the dot.
pub(super) const PARQUET_EXTENSION: &str = "parquet";

/// The extension of JSON Lines files written with `c`, without the leading dot.
pub(super) fn jsonl_extension(c: Compression) -> &'static str {
    match c {
        Compression::Zstd => "jsonl.zst",
        Compression::Gzip => "jsonl.gz",
        Compression::None => "jsonl",
    }
}

/// `<out>/<database path, / as %2F>/<created_at as 20261121T114500Z>`.
pub(crate) fn export_dir(out: &Path, snapshot: &SnapshotInfo) -> PathBuf {
    out.join(database_dir_name(&snapshot.path))
        .join(snapshot.created_at.format("%Y%m%dT%H%M%SZ").to_string())
}

/// One directory name for a database path, always a plain name inside `--out` whatever
/// the catalog says, and a different name for every path (`data/posts.db` and
/// `data_posts.db` must not export into one directory, the second over the first):
/// `%`, `/` and NUL are written `%25`, `%2F` and `%00`, and the names that would mean the
/// directory itself or its parent (`""`, `.`, `..`, any all-dots name) get their dots
/// written as `%2E` (an empty one becomes `%`, which no escaped path is).
fn database_dir_name(path: &str) -> String {
    let mut name = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => name.push_str("%25"),
            '/' => name.push_str("%2F"),
            '\0' => name.push_str("%00"),
            c => name.push(c),
        }
    }
    if name.is_empty() {
        "%".to_string()
    } else if name.bytes().all(|b| b == b'.') {
        name.replace('.', "%2E")
    } else {
        name
    }
}

/// The file stem used for a table: bytes outside `[A-Za-z0-9_-]` become `%XX`; the empty
/// name becomes `%`; stems over 180 bytes are cut and get `~` + 16 hex digits of sha256.
pub(crate) fn table_file_stem(table: &str) -> String {
    if table.is_empty() {
        return "%".to_string();
    }
    let mut out = String::with_capacity(table.len());
    for &b in table.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push_str(&format!("{b:02X}"));
        }
    }
    if out.len() > MAX_STEM_BYTES {
        let digest = Sha256::digest(table.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        out.truncate(MAX_STEM_BYTES - 17);
        // An encoded `%XX` may have been cut in the middle; drop a dangling escape.
        if let Some(pos) = out[out.len().saturating_sub(2)..].find('%') {
            out.truncate(out.len().saturating_sub(2) + pos);
        }
        out.push('~');
        out.push_str(&hex);
    }
    out
}

/// Inverse of [`table_file_stem`]; `None` for hashed (cut) stems or malformed input.
pub(crate) fn table_name_from_stem(stem: &str) -> Option<String> {
    if stem == "%" {
        return Some(String::new());
    }
    if stem.contains('~') {
        return None;
    }
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The table a file was exported from: its name without `.parquet` / `.jsonl[.gz|.zst]`,
/// percent-decoded.
pub(crate) fn table_from_file_name(file: &Path) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    let extensions = [
        PARQUET_EXTENSION,
        jsonl_extension(Compression::Gzip),
        jsonl_extension(Compression::Zstd),
        jsonl_extension(Compression::None),
    ];
    let stem = extensions
        .iter()
        .find_map(|ext| name.strip_suffix(ext)?.strip_suffix('.'))?;
    table_name_from_stem(stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems() {
        for name in [
            "plain", "", "a b", "%", "~x", "ünï", "../x", ".hidden", "a.b",
        ] {
            let stem = table_file_stem(name);
            assert!(!stem.contains('/') && !stem.starts_with('.'), "{stem}");
            assert_eq!(table_name_from_stem(&stem).as_deref(), Some(name));
        }
        let long = "é".repeat(200);
        let stem = table_file_stem(&long);
        assert!(stem.len() <= MAX_STEM_BYTES && stem.contains('~'));
        assert_ne!(stem, table_file_stem(&format!("{long}x")));
    }

    #[test]
    fn database_dir_names_stay_inside_out() {
        assert_eq!(database_dir_name("data/posts.db"), "data%2Fposts.db");
        assert_eq!(database_dir_name(".."), "%2E%2E");
        assert_eq!(database_dir_name("."), "%2E");
        assert_eq!(database_dir_name(""), "%");
        assert_eq!(database_dir_name("../../x"), "..%2F..%2Fx");
        assert_eq!(database_dir_name("/etc/passwd"), "%2Fetc%2Fpasswd");
        for path in ["..", ".", "", "/", "a/../..", "...", "\0"] {
            let name = database_dir_name(path);
            let joined = Path::new("out").join(&name);
            assert_eq!(
                joined.parent(),
                Some(Path::new("out")),
                "{path:?} -> {name:?}"
            );
            assert!(!matches!(name.as_str(), "" | "." | ".."));
        }
    }

    #[test]
    fn no_two_database_paths_share_a_directory() {
        let paths = [
            "data/posts.db",
            "data_posts.db",
            "data%2Fposts.db",
            "data%252Fposts.db",
            "",
            "%",
            "%25",
            ".",
            "%2E",
            "..",
            "%2E%2E",
            "a\0b",
            "a%00b",
            "a/b/c",
            "a/b%2Fc",
        ];
        let names: std::collections::BTreeSet<String> =
            paths.iter().map(|p| database_dir_name(p)).collect();
        assert_eq!(names.len(), paths.len(), "{names:?}");
    }

    #[test]
    fn table_names_come_back_from_file_names() {
        assert_eq!(
            table_from_file_name(Path::new("x/parquet/posts.parquet")).as_deref(),
            Some("posts")
        );
        assert_eq!(
            table_from_file_name(Path::new("posts.jsonl.gz")).as_deref(),
            Some("posts")
        );
        assert_eq!(table_from_file_name(Path::new("posts.csv")), None);
    }
}
