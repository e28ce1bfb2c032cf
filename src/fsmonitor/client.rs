//! The hook's side of the watcher: ask it over its socket, start it when none runs, and
//! (for `dbguard install --status` and `uninstall`) ask how it is or tell it to stop.
//! Every failure here is "no watcher": the hook then walks, which is always exact.

use std::fs;
use std::io::{self, IsTerminal as _, Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::watcher::{FAILED, LOCK, NOTE, SOCKET, WATCHER_VARIABLE};

/// How long the hook waits for a reply. A watcher busy reading a tree that just appeared
/// (`npm install`) may take a while; past this the hook walks instead.
const REPLY_WAIT: Duration = Duration::from_secs(3);

/// Retry a watcher that failed for a reason that may have passed (the sysctl is read
/// again on every call) at most this often.
const RETRY_FAILED: Duration = Duration::from_secs(24 * 3600);

/// The watcher's reply to a query.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The token for the state of the worktree now, and every path changed since the
    /// token asked about.
    Exact { token: String, paths: Vec<Vec<u8>> },
    /// The token for now; the token asked about is not the watcher's.
    Unknown { token: String },
    /// No watcher answered.
    Unavailable,
}

/// Connect to the watcher's socket; by its path relative to the current directory when
/// the absolute one is longer than a socket path may be (107 bytes).
fn connect(state_dir: &Path) -> io::Result<UnixStream> {
    let socket = state_dir.join(SOCKET);
    match UnixStream::connect(&socket) {
        Err(error) if error.kind() == io::ErrorKind::InvalidInput => {
            let cwd = std::env::current_dir()?;
            let relative = socket.strip_prefix(&cwd).map_err(|_| error)?;
            UnixStream::connect(relative)
        }
        connected => connected,
    }
}

fn request(state_dir: &Path, line: &str) -> io::Result<Vec<u8>> {
    let mut stream = connect(state_dir)?;
    stream.set_read_timeout(Some(REPLY_WAIT))?;
    stream.set_write_timeout(Some(REPLY_WAIT))?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    Ok(reply)
}

/// Ask the watcher of this worktree what changed since `token`.
pub(crate) fn ask(state_dir: &Path, token: &str) -> Reply {
    // A token with a line break cannot be ours (git hands back what we gave it).
    if token.contains('\n') {
        return Reply::Unavailable;
    }
    let Ok(reply) = request(state_dir, &format!("query {token}")) else {
        return Reply::Unavailable;
    };
    parse(&reply)
}

/// A token of the running watcher for the worktree as it is now (after the cookie
/// handshake), `None` when no watcher answers.
pub(crate) fn fresh_token(state_dir: &Path) -> Option<String> {
    // An empty token is never the watcher's: it replies `unknown <token for now>`.
    match ask(state_dir, "") {
        Reply::Exact { token, .. } | Reply::Unknown { token } => Some(token),
        Reply::Unavailable => None,
    }
}

fn parse(reply: &[u8]) -> Reply {
    let Some(newline) = reply.iter().position(|b| *b == b'\n') else {
        return Reply::Unavailable;
    };
    let (head, body) = (&reply[..newline], &reply[newline + 1..]);
    let Ok(head) = std::str::from_utf8(head) else {
        return Reply::Unavailable;
    };
    match head.split_once(' ') {
        Some(("exact", rest)) => {
            let Some((count, token)) = rest.split_once(' ') else {
                return Reply::Unavailable;
            };
            let paths: Vec<Vec<u8>> = body
                .split(|b| *b == 0)
                .filter(|path| !path.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            let whole = count.parse() == Ok(paths.len()) && body.last().is_none_or(|b| *b == 0);
            if !whole || token.is_empty() {
                return Reply::Unavailable;
            }
            Reply::Exact {
                token: token.to_string(),
                paths,
            }
        }
        Some(("unknown", token)) if !token.is_empty() && body.is_empty() => Reply::Unknown {
            token: token.to_string(),
        },
        _ => Reply::Unavailable,
    }
}

/// Start a watcher for `worktree` unless one runs (or is starting), one cannot run here
/// (recorded in `watcher-failed`, said once on a terminal), or the user turned it off.
/// Never waits for it: this query is answered by the walk.
pub(crate) fn start(state_dir: &Path, worktree: &Path) {
    if std::env::var_os(WATCHER_VARIABLE).is_some_and(|v| v == "0") {
        return;
    }
    say_note_once(state_dir);
    if failed_here(state_dir) {
        return;
    }
    // A held lock: a watcher runs or is reading the tree; it binds the socket when ready.
    if let Ok(lock) = fs::File::open(state_dir.join(LOCK))
        && lock.try_lock().is_err()
    {
        return;
    }
    // Only the hook program itself can become the watcher (not a test binary).
    let Ok(program) = std::env::current_exe() else {
        return;
    };
    if program
        .file_name()
        .is_none_or(|name| name != super::PROGRAM)
    {
        return;
    }
    let _ = Command::new(program)
        .arg("watch")
        .arg(worktree)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// Whether a recorded failure still holds: the limit it hit is unchanged and it is
/// recent. Says why once, to a person.
fn failed_here(state_dir: &Path) -> bool {
    let failed = state_dir.join(FAILED);
    let Ok(text) = fs::read_to_string(&failed) else {
        return false;
    };
    let (first, why) = text.split_once('\n').unwrap_or((&text, ""));
    let limit_now = format!(
        "max_user_watches={}",
        super::watch::read_limit("max_user_watches").unwrap_or_default()
    );
    let recent = fs::metadata(&failed)
        .and_then(|m| m.modified())
        .is_ok_and(|at| at.elapsed().unwrap_or_default() < RETRY_FAILED);
    if first != limit_now || !recent {
        let _ = fs::remove_file(&failed);
        return false;
    }
    let said = state_dir.join(format!("{FAILED}.said"));
    if io::stderr().is_terminal() && !said.exists() && fs::write(&said, "").is_ok() {
        super::say(why.trim());
    }
    true
}

/// Why the last watcher stopped early (an overflowed queue), once, to a person.
fn say_note_once(state_dir: &Path) {
    let note = state_dir.join(NOTE);
    if io::stderr().is_terminal()
        && let Ok(text) = fs::read_to_string(&note)
        && fs::remove_file(&note).is_ok()
    {
        super::say(text.trim());
    }
}

/// How the watcher of a worktree is, for `dbguard install --status`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Running {
        pid: u32,
        watches: u64,
        resident_kib: u64,
    },
    /// None runs; the reason one cannot, when there is one.
    NotRunning { failed: Option<String> },
}

pub(crate) fn status(git_dir: &Path) -> Status {
    let state_dir = match super::state::state_dir(git_dir) {
        Ok(dir) => dir,
        Err(error) => {
            return Status::NotRunning {
                failed: Some(error.to_string()),
            };
        }
    };
    let reply = request(&state_dir, "status").unwrap_or_default();
    let text = String::from_utf8_lossy(&reply);
    let field = |name: &str| -> Option<u64> {
        text.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
    };
    match (field("pid"), field("watches"), field("rss_kib")) {
        (Some(pid), Some(watches), Some(resident_kib)) => Status::Running {
            pid: pid as u32,
            watches,
            resident_kib,
        },
        _ => Status::NotRunning {
            failed: fs::read_to_string(state_dir.join(FAILED))
                .ok()
                .and_then(|text| Some(text.split_once('\n')?.1.trim().to_string())),
        },
    }
}

/// Tell the watcher of a worktree to exit; whether one was running.
pub(crate) fn stop(git_dir: &Path) -> bool {
    super::state::state_dir(git_dir).is_ok_and(|state_dir| {
        request(&state_dir, "stop").is_ok_and(|reply| reply.starts_with(b"stopping"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_exact_only_when_whole() {
        assert_eq!(
            parse(b"exact 2 dbguard:w:1.a:7\na.txt\0dir/\0"),
            Reply::Exact {
                token: "dbguard:w:1.a:7".into(),
                paths: vec![b"a.txt".to_vec(), b"dir/".to_vec()]
            }
        );
        assert_eq!(
            parse(b"exact 0 dbguard:w:1.a:7\n"),
            Reply::Exact {
                token: "dbguard:w:1.a:7".into(),
                paths: vec![]
            }
        );
        // Cut off mid-path, or after a whole path: not an answer.
        assert_eq!(parse(b"exact 2 t\na.txt\0di"), Reply::Unavailable);
        assert_eq!(parse(b"exact 2 t\na.txt\0"), Reply::Unavailable);
        assert_eq!(parse(b"exact 0 t"), Reply::Unavailable);
        assert_eq!(parse(b"exact t\n"), Reply::Unavailable);
        assert_eq!(parse(b"unknown\n"), Reply::Unavailable);
        assert_eq!(
            parse(b"unknown t2\n"),
            Reply::Unknown { token: "t2".into() }
        );
        assert_eq!(parse(b""), Reply::Unavailable);
    }
}
