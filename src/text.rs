//! Text for people, with no terminal involved: byte sizes, counts with separators,
//! aligned tables, ages and local times, shell quoting, control characters escaped. Pure,
//! so every layer may use it (a base module; `ui` re-exports it for the layers above).

/// Human byte counts: 1.5 MiB.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// 900000 → "900,000".
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 1 → "1 row", 900000 → "900,000 rows".
pub(crate) fn rows(n: u64) -> String {
    format!("{} row{}", count(n), if n == 1 { "" } else { "s" })
}

/// Quote a path or argument for the shell when it needs it: the one quoting function for
/// every command line shown to users, so each one can be pasted as it is.
pub(crate) fn shell_quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// Characters a terminal acts on instead of showing: C0 controls except newline and tab
/// (escape sequences set the window title, clear the screen, move the cursor), DEL, C1
/// controls (U+009B is a one-character CSI), and the bidirectional overrides and
/// isolates that make text read in another order than it is.
fn is_terminal_control(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every terminal control shown as an escape (`\x1b`, `\u{202e}`) instead
/// of acted on: names and messages from databases, files and remotes reach the terminal
/// through this. `keep` lists exact sequences to leave alone (the colours dbguard itself
/// paints with).
pub(crate) fn escape_controls<'a>(text: &'a str, keep: &[&str]) -> std::borrow::Cow<'a, str> {
    if !text.chars().any(is_terminal_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some(kept) = keep.iter().find(|k| !k.is_empty() && rest.starts_with(**k)) {
            out.push_str(kept);
            rest = &rest[kept.len()..];
            continue;
        }
        if is_terminal_control(c) {
            if (c as u32) < 0x100 {
                out.push_str(&format!("\\x{:02x}", c as u32));
            } else {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
        } else {
            out.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    out.into()
}

/// JSON text (serde_json's, which escapes C0 controls already) with DEL, C1 and the
/// bidirectional controls escaped as `\uXXXX` too: still the same JSON, and nothing in
/// it acts on a terminal.
pub(crate) fn escape_json_controls(json: &str) -> std::borrow::Cow<'_, str> {
    if !json.chars().any(is_terminal_control) {
        return json.into();
    }
    json.chars()
        .map(|c| {
            if is_terminal_control(c) {
                format!("\\u{:04x}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// Render rows as an aligned plain-text table (first row is the header).
pub(crate) fn table(rows: &[Vec<String>]) -> Vec<String> {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    let pad = widths[i] - cell.chars().count();
                    // Numbers right-aligned, text left-aligned.
                    if !cell.is_empty() && cell.chars().all(|c| c.is_ascii_digit() || c == ',') {
                        format!("{}{cell}", " ".repeat(pad))
                    } else {
                        format!("{cell}{}", " ".repeat(pad))
                    }
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

/// "2 hours ago" style age of a timestamp, for people.
pub(crate) fn age(then: chrono::DateTime<chrono::Utc>) -> String {
    let seconds = (crate::clock::now() - then).num_seconds().max(0);
    match seconds {
        0..=59 => format!("{seconds} s ago"),
        60..=3599 => format!("{} min ago", seconds / 60),
        3600..=86_399 => format!("{} h ago", seconds / 3600),
        86_400..=172_799 => "1 day ago".to_string(),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

/// Local time with minutes, as the log shows it.
pub(crate) fn local_time(time: chrono::DateTime<chrono::Utc>) -> String {
    time.with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// How far long work has got, for a progress line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WorkDone {
    /// Rows done and in all (all from the snapshot's census).
    pub(crate) rows: u64,
    pub(crate) rows_total: u64,
    /// Bytes done (written or read: the caller's label says which).
    pub(crate) bytes: u64,
    /// The share of the whole work done, 0..=1 (not rows/rows_total when some rows are
    /// read twice); the time left is estimated from it.
    pub(crate) fraction: f64,
    pub(crate) elapsed: std::time::Duration,
}

/// "export #4: 412,000 of 900,000 rows, 183.2 MiB written, 15,800 rows/s, about 31 s
/// left": rate and time left only once there is something to estimate them from.
pub(crate) fn work_line(label: &str, bytes_label: &str, work: &WorkDone) -> String {
    let mut line = format!(
        "{label}: {} of {} rows, {} {bytes_label}",
        count(work.rows),
        count(work.rows_total),
        bytes(work.bytes)
    );
    let seconds = work.elapsed.as_secs_f64();
    if seconds >= 0.5 && work.rows > 0 {
        line.push_str(&format!(
            ", {} rows/s",
            count((work.rows as f64 / seconds).round() as u64)
        ));
    }
    let fraction = work.fraction.clamp(0.0, 1.0);
    if seconds >= 0.5 && fraction > 0.0 && fraction < 1.0 {
        let left = seconds * (1.0 - fraction) / fraction;
        line.push_str(&format!(", about {} left", duration(left.round() as u64)));
    }
    line
}

/// 31 → "31 s", 125 → "2 min 05 s", 3720 → "1 h 02 min".
pub(crate) fn duration(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min {:02} s", seconds / 60, seconds % 60),
        _ => format!("{} h {:02} min", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_show_rows_bytes_rate_and_time_left() {
        let work = WorkDone {
            rows: 412_000,
            rows_total: 900_000,
            bytes: 192_100_000,
            fraction: 0.4,
            elapsed: std::time::Duration::from_secs(26),
        };
        assert_eq!(
            work_line("export #4", "written", &work),
            "export #4: 412,000 of 900,000 rows, 183.2 MiB written, 15,846 rows/s, about 39 s left"
        );
        // Nothing to estimate from yet: no rate, no time left.
        let start = WorkDone {
            rows: 0,
            fraction: 0.0,
            elapsed: std::time::Duration::from_millis(100),
            ..work
        };
        assert_eq!(
            work_line("export #4", "written", &start),
            "export #4: 0 of 900,000 rows, 183.2 MiB written"
        );
        let done = WorkDone {
            fraction: 1.0,
            ..work
        };
        assert!(!work_line("x", "read", &done).contains("left"));
        assert_eq!(duration(31), "31 s");
        assert_eq!(duration(125), "2 min 05 s");
        assert_eq!(duration(3720), "1 h 02 min");
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(count(900000), "900,000");
        assert_eq!(count(12), "12");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(10), "10 B");
    }

    #[test]
    fn shell_quote_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("data/posts.db"), "data/posts.db");
        assert_eq!(shell_quote(""), "''");
        let quoted = shell_quote("it's my db.sqlite");
        assert_eq!(quoted, r"'it'\''s my db.sqlite'");
        // What a shell makes of the quoted text is the original argument.
        let echoed = std::process::Command::new("sh")
            .args(["-c", &format!("printf %s {quoted}")])
            .output()
            .expect("sh runs");
        assert_eq!(String::from_utf8_lossy(&echoed.stdout), "it's my db.sqlite");
    }

    #[test]
    fn terminal_controls_are_shown_not_obeyed() {
        let hostile = "t\x1b]0;owned\x07\x1b[2J\r\u{9b}31m\u{202e}gpj.exe";
        let shown = escape_controls(hostile, &[]);
        assert_eq!(
            shown,
            "t\\x1b]0;owned\\x07\\x1b[2J\\x0d\\x9b31m\\u{202e}gpj.exe"
        );
        assert!(!shown.chars().any(is_terminal_control));
        // Plain text, newlines and tabs, and the kept sequences pass unchanged.
        assert_eq!(escape_controls("posts\tpäge\n", &[]), "posts\tpäge\n");
        assert_eq!(
            escape_controls("\x1b[31mred\x1b[0m \x1b[2J", &["\x1b[31m", "\x1b[0m"]),
            "\x1b[31mred\x1b[0m \\x1b[2J"
        );
        // JSON stays JSON and decodes to the original text.
        let json = serde_json::to_string(hostile).unwrap();
        let escaped = escape_json_controls(&json);
        assert!(!escaped.chars().any(is_terminal_control));
        assert_eq!(serde_json::from_str::<String>(&escaped).unwrap(), hostile);
    }

    #[test]
    fn tables_align() {
        let lines = table(&[
            vec!["table".into(), "rows".into()],
            vec!["posts".into(), "900,000".into()],
        ]);
        assert_eq!(lines, vec!["table  rows", "posts  900,000"]);
    }
}
