//! `--json` is one documented schema: every command that prints JSON is run for real (a
//! git repository, SQLite and DuckDB files, snapshots, a shrink, a vanished file, a
//! damaged chunk) and its output is validated against its definition in
//! `docs/json-schema.json`, whose objects forbid undocumented fields. The commands the
//! help and the README name, the commands whose source prints JSON and the commands run
//! here must be the same list.

use std::collections::BTreeSet;
use std::path::Path;

use dbguard::testing::*;
use serde_json::Value;

fn schema() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/json-schema.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The subset of JSON Schema the schema file uses: `type` (one or a list), `enum`,
/// `properties`, `required`, `additionalProperties` (false or a schema), `items`,
/// `anyOf`, `minimum`, `format: date-time` and `$ref` to `#/definitions/…`. Every
/// mismatch is pushed to `errors` with its JSON path; a keyword it does not know fails,
/// so the schema cannot rely on something this never checks.
fn validate(root: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(keywords) = schema.as_object() else {
        errors.push(format!("{at}: schema is not an object: {schema}"));
        return;
    };
    for keyword in keywords.keys() {
        let known = [
            "type",
            "enum",
            "properties",
            "required",
            "additionalProperties",
            "items",
            "anyOf",
            "minimum",
            "format",
            "$ref",
            "description",
        ];
        if !known.contains(&keyword.as_str()) {
            errors.push(format!("{at}: the validator does not know `{keyword}`"));
        }
    }
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference
            .strip_prefix("#/definitions/")
            .unwrap_or_else(|| panic!("unsupported $ref {reference}"));
        let target = &root["definitions"][name];
        assert!(
            !target.is_null(),
            "$ref to a missing definition {reference}"
        );
        validate(root, target, value, at, errors);
    }
    if let Some(options) = schema.get("anyOf").and_then(Value::as_array) {
        let fits = options.iter().any(|option| {
            let mut inner = Vec::new();
            validate(root, option, value, at, &mut inner);
            inner.is_empty()
        });
        if !fits {
            let mut why = Vec::new();
            for option in options {
                validate(root, option, value, at, &mut why);
            }
            errors.push(format!("{at}: fits none of anyOf: {}", why.join("; ")));
        }
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            other => panic!("bad type {other}"),
        };
        let fits = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "boolean" => value.is_boolean(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "string" => value.is_string(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            other => panic!("unknown type {other}"),
        });
        if !fits {
            errors.push(format!("{at}: {value} is not of type {types:?}"));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let (Some(minimum), Some(number)) = (
        schema.get("minimum").and_then(Value::as_f64),
        value.as_f64(),
    ) && number < minimum
    {
        errors.push(format!("{at}: {value} is below {minimum}"));
    }
    if let (Some(format), Some(text)) =
        (schema.get("format").and_then(Value::as_str), value.as_str())
    {
        assert_eq!(format, "date-time", "unsupported format");
        // RFC 3339 in UTC with milliseconds, as every dbguard time is written.
        let parsed = chrono::DateTime::parse_from_rfc3339(text);
        if parsed.is_err() || !text.ends_with('Z') || text.len() != 24 {
            errors.push(format!(
                "{at}: {text:?} is not an RFC 3339 UTC time with milliseconds"
            ));
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    errors.push(format!("{at}: `{name}` is missing"));
                }
            }
        }
        for (name, field) in object {
            let here = format!("{at}.{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(field_schema) => validate(root, field_schema, field, &here, errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        errors.push(format!("{here}: not in the schema"));
                    }
                    Some(Value::Bool(true)) | None => {}
                    Some(extra) => validate(root, extra, field, &here, errors),
                },
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            validate(root, items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

/// Errors of `value` against the definition named `command`.
fn errors_for(root: &Value, command: &str, value: &Value) -> Vec<String> {
    let definition = &root["definitions"][command];
    assert!(
        !definition.is_null(),
        "docs/json-schema.json has no definition for `{command}`"
    );
    let mut errors = Vec::new();
    validate(root, definition, value, command, &mut errors);
    errors
}

/// Runs commands, validates what each printed, and remembers which commands it saw.
struct Checker {
    schema: Value,
    seen: BTreeSet<String>,
}

impl Checker {
    #[track_caller]
    fn check(&mut self, command: &str, run: &Run) -> Value {
        let value = run.json();
        let errors = errors_for(&self.schema, command, &value);
        assert!(
            errors.is_empty(),
            "`{command} --json` does not match docs/json-schema.json:\n{}\n--- output\n{value:#}",
            errors.join("\n")
        );
        self.seen.insert(command.to_string());
        value
    }
}

fn make_duckdb(path: &Path) {
    let conn = duckdb::Connection::open(path).unwrap();
    conn.execute_batch(
        "CREATE TABLE events AS SELECT range AS id, 'event ' || range AS name FROM range(500);
         CREATE TABLE users(id INTEGER PRIMARY KEY, name VARCHAR); INSERT INTO users VALUES (1, 'ada');",
    )
    .unwrap();
}

#[test]
fn every_json_command_matches_the_documented_schema() {
    let mut c = Checker {
        schema: schema(),
        seen: BTreeSet::new(),
    };
    let repo = TestRepo::new();
    let posts = repo.root.join("posts.db");
    make_posts_db(&posts, 300, 50);
    make_duckdb(&repo.root.join("events.duckdb"));
    repo.git(["add", "posts.db"]);
    repo.git(["commit", "-q", "-m", "track posts"]);

    // Before any snapshot: documents, not an empty stdout.
    c.check("verify", &repo.dbguard(["verify", "--json"]).ok());
    c.check("log", &repo.dbguard(["log", "--json"]).ok());
    c.check(
        "prune",
        &repo.dbguard(["prune", "--dry-run", "--json"]).ok(),
    );

    // #1 posts.db, #2 events.duckdb.
    let taken = c.check("snapshot", &repo.dbguard(["snapshot", "--json"]).ok());
    assert_eq!(taken.as_array().unwrap().len(), 2, "{taken:#}");
    let posts_id = taken
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["path"] == "posts.db")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let log = c.check("log", &repo.dbguard(["log", "--json"]).ok());
    assert_eq!(log.as_array().unwrap().len(), 2);
    let show = c.check(
        "show",
        &repo.dbguard(["show", &posts_id.to_string(), "--json"]).ok(),
    );
    assert_eq!(show["tables"]["posts"], 300);
    assert_eq!(show["git_state"], "tracked");

    // A shrink and a vanished file: status reports both losses.
    rusqlite::Connection::open(&posts)
        .unwrap()
        .execute("DELETE FROM posts WHERE id > 100", [])
        .unwrap();
    std::fs::rename(
        repo.root.join("events.duckdb"),
        repo.path("events.duckdb.away"),
    )
    .unwrap();
    let status = c.check("status", &repo.dbguard(["status", "--json"]).flags_a_loss());
    let states: BTreeSet<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, BTreeSet::from(["shrank", "vanished"]), "{status:#}");

    // Each database now vs its last snapshot (one of them gone), one snapshot vs now.
    let diff = c.check("diff", &repo.dbguard(["diff", "--json"]).ok());
    assert_eq!(
        diff.as_array().unwrap().len(),
        1,
        "the scan sees posts.db only"
    );
    assert_eq!(diff[0]["tables"]["posts"]["rows_after"], 100);
    c.check(
        "diff",
        &repo.dbguard(["diff", &posts_id.to_string(), "--json"]).ok(),
    );
    let events_id = taken
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["path"] == "events.duckdb")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let gone = c.check(
        "diff",
        &repo
            .dbguard(["diff", &events_id.to_string(), "--json"])
            .ok(),
    );
    assert_eq!(gone[0]["after_exists"], false, "{gone:#}");
    assert_eq!(gone[0]["after_snapshot_id"], Value::Null);

    // Restore in place (the shrunk state is snapshotted first: #3), and to another file.
    let restored = c.check(
        "restore",
        &repo.dbguard(["restore", "posts.db", "--json"]).ok(),
    );
    assert_eq!(restored["tables"]["posts"], 300);
    assert!(restored["undo_snapshot_id"].is_i64(), "{restored:#}");
    let elsewhere = repo.path("old.db");
    c.check(
        "restore",
        &repo
            .dbguard([
                "restore",
                "--from",
                &posts_id.to_string(),
                "--to",
                elsewhere.to_str().unwrap(),
                "--json",
            ])
            .ok(),
    );
    std::fs::rename(
        repo.path("events.duckdb.away"),
        repo.root.join("events.duckdb"),
    )
    .unwrap();
    // Two snapshots of one database, compared.
    let two = c.check(
        "diff",
        &repo
            .dbguard(["diff", &posts_id.to_string(), "3", "--json"])
            .ok(),
    );
    assert_eq!(two[0]["after_snapshot_id"], 3, "{two:#}");

    // Export (a fresh snapshot of each database) and import back.
    let exported = c.check(
        "export",
        &repo.dbguard(["export", "--format", "jsonl", "--json"]).ok(),
    );
    assert_eq!(exported.as_array().unwrap().len(), 2, "{exported:#}");
    c.check(
        "export",
        &repo
            .dbguard(["export", &posts_id.to_string(), "--json"])
            .ok(),
    );
    // Two exports of the same snapshot ran above: either file will do.
    let jsonl = files_under(&repo.exports())
        .into_iter()
        .find(|path| path.ends_with("jsonl/posts.jsonl.zst"))
        .expect("an exported posts.jsonl.zst");
    let import = |into: &str| {
        repo.dbguard([
            "import-table".as_ref(),
            jsonl.as_os_str(),
            "--into".as_ref(),
            into.as_ref(),
            "--replace".as_ref(),
            "--json".as_ref(),
        ])
        .ok()
    };
    let new = c.check("import-table", &import("copy.db"));
    assert_eq!(
        new["undo_snapshot_id"],
        Value::Null,
        "a new file: nothing to snapshot"
    );
    let again = c.check("import-table", &import("copy.db"));
    assert_eq!(again["path"], "copy.db");
    assert!(again["undo_snapshot_id"].is_i64(), "{again:#}");

    c.check("config", &repo.dbguard(["config", "--json"]).ok());

    let dry = c.check(
        "prune",
        &repo
            .dbguard(["prune", "--keep-last", "1", "--dry-run", "--json"])
            .ok(),
    );
    assert!(!dry["removed"].as_array().unwrap().is_empty(), "{dry:#}");
    assert!(!dry["kept"].as_array().unwrap().is_empty(), "{dry:#}");
    c.check("verify", &repo.dbguard(["verify", "--json"]).ok());
    let pruned = c.check(
        "prune",
        &repo.dbguard(["prune", "--keep-last", "2", "--json"]).ok(),
    );
    assert_eq!(pruned["dry_run"], false);

    // A file:// remote: listed, pushed to, read back, fetched into a fresh clone, pruned.
    let nas = repo.path("nas");
    let url = format!("file://{}", nas.display());
    repo.dbguard(["remote", "add", "nas", &url, "--no-encryption"])
        .ok();
    let listed = c.check("remote", &repo.dbguard(["remote", "list", "--json"]).ok());
    assert_eq!(listed["remotes"][0]["name"], "nas", "{listed:#}");
    let config = c.check("config", &repo.dbguard(["config", "--json"]).ok());
    assert_eq!(config["remotes"][0]["url"], url.as_str(), "{config:#}");
    let pushed = c.check("push", &repo.dbguard(["push", "--json"]).ok());
    let pushed = pushed["pushed"].as_array().unwrap().len();
    assert!(pushed > 0);
    c.check(
        "verify",
        &repo.dbguard(["verify", "--remote", "nas", "--json"]).ok(),
    );
    let fresh = TestRepo::new();
    fresh
        .dbguard(["remote", "add", "nas", &url, "--no-encryption"])
        .ok();
    let fetched = c.check("fetch", &fresh.dbguard(["fetch", "--json"]).ok());
    assert_eq!(fetched["fetched"].as_array().unwrap().len(), pushed);
    let remote_pruned = c.check(
        "prune",
        &repo
            .dbguard(["prune", "--keep-last", "1", "--remote", "nas", "--json"])
            .ok(),
    );
    assert!(remote_pruned["remote"].is_object(), "{remote_pruned:#}");

    // A damaged chunk: verify fails, and its report still fits the schema.
    let newest = c.check("log", &repo.dbguard(["log", "posts.db", "--json"]).ok())[0]["id"]
        .as_i64()
        .unwrap();
    repo.damage_stored_piece(newest, 0);
    let verify = c.check("verify", &repo.dbguard(["verify", "--json"]).fails_with(1));
    assert!(
        !verify["damage"].as_array().unwrap().is_empty(),
        "{verify:#}"
    );
    assert!(
        !verify["broken"].as_array().unwrap().is_empty(),
        "{verify:#}"
    );

    let documented: BTreeSet<String> = schema()["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        c.seen, documented,
        "every command in docs/json-schema.json is run and validated here"
    );
}

/// The commands whose source prints JSON (`json::print`), by command name.
fn commands_printing_json() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/commands");
    files_under(&dir)
        .into_iter()
        .filter(|file| {
            std::fs::read_to_string(file)
                .unwrap()
                .contains("json::print(")
        })
        .map(|file| {
            file.file_stem()
                .unwrap()
                .to_string_lossy()
                .replace('_', "-")
        })
        .collect()
}

#[test]
fn the_help_the_readme_and_the_schema_name_the_same_json_commands() {
    let repo = TestRepo::new();
    let help = repo.dbguard(["--help"]).ok().stdout;
    let help: String = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let listed = help
        .split_once("Machine-readable JSON on stdout from: ")
        .and_then(|(_, rest)| rest.split_once(". Other commands ignore it"))
        .unwrap_or_else(|| panic!("the --json help names its commands:\n{help}"))
        .0;
    let in_help: BTreeSet<String> = listed.split(", ").map(str::to_string).collect();

    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let sentence = readme
        .split_once("`--json` prints machine-readable output for")
        .and_then(|(_, rest)| rest.split_once('.'))
        .expect("the README says which commands print JSON")
        .0;
    let in_readme: BTreeSet<String> = sentence
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();

    let in_schema: BTreeSet<String> = schema()["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let in_source = commands_printing_json();
    assert_eq!(in_help, in_source, "--help vs the commands that print JSON");
    assert_eq!(
        in_readme, in_source,
        "README vs the commands that print JSON"
    );
    assert_eq!(
        in_schema, in_source,
        "docs/json-schema.json vs the commands that print JSON"
    );
}

#[test]
fn the_validator_rejects_what_the_schema_does_not_allow() {
    let root = schema();
    let good = serde_json::json!({
        "id": 3, "path": "posts.db", "taken_at": "2026-11-21T10:00:00.000Z", "rows": 5,
        "partial": false, "missing": null, "instant": null, "retries": null
    });
    assert_eq!(
        errors_for(&root, "snapshot_brief", &good),
        Vec::<String>::new()
    );
    let mutate = |edit: &dyn Fn(&mut Value)| {
        let mut bad = good.clone();
        edit(&mut bad);
        errors_for(&root, "snapshot_brief", &bad)
    };
    let undocumented = mutate(&|v| v["created_at"] = "2026-11-21T10:00:00.000Z".into());
    assert!(
        undocumented
            .iter()
            .any(|e| e.contains("created_at: not in the schema")),
        "{undocumented:?}"
    );
    let missing = mutate(&|v| {
        v.as_object_mut().unwrap().remove("taken_at");
    });
    assert!(
        missing.iter().any(|e| e.contains("`taken_at` is missing")),
        "{missing:?}"
    );
    let text_id = mutate(&|v| v["id"] = "#3".into());
    assert!(
        text_id.iter().any(|e| e.contains("not of type")),
        "{text_id:?}"
    );
    let local_time = mutate(&|v| v["taken_at"] = "2026-11-21 10:00".into());
    assert!(
        local_time.iter().any(|e| e.contains("RFC 3339")),
        "{local_time:?}"
    );
    let bad_missing = mutate(&|v| v["missing"] = serde_json::json!({"commits": 1}));
    assert!(
        bad_missing.iter().any(|e| e.contains("anyOf")),
        "{bad_missing:?}"
    );
    let negative = mutate(&|v| v["rows"] = (-1).into());
    assert!(!negative.is_empty(), "rows below zero");
    let mut kind = serde_json::json!([{"path": "a.db"}]);
    kind[0]["kind"] = "postgres".into();
    let in_array = errors_for(&root, "status", &kind);
    assert!(
        in_array.iter().any(|e| e.contains("status[0].kind")),
        "{in_array:?}"
    );
}
