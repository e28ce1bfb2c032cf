//! The watcher: a per-worktree process (`dbguard-fsmonitor watch <worktree>`) that the
//! hook starts on demand and asks over a Unix socket in the worktree's state dir
//! ([`super::state`], outside the git dir), so that `git status` learns what changed
//! from inotify events instead of a walk.
//!
//! A query (`query <token>`) is answered only after the cookie handshake: the watcher
//! creates `cookies/<n>` in the state dir, watched by the same inotify instance as the
//! worktree, and waits until it reads that creation; every change made before the query
//! was read by then. Its reply is `exact <count> <token>` and the paths changed since the
//! token (NUL-terminated), or `unknown <token>` when the token is not one of this process's
//! (another watcher's, a walk's, an empty one): the hook then answers from its walk
//! against that token, and hands git the new token. A watcher that cannot follow every
//! change ([`watch::Stop`]) exits; its tokens die with it, so the next query walks.
//!
//! One per worktree (an exclusive lock on `watcher.lock`); detached from git (own
//! session, no terminal, inherited descriptors closed); exits after an idle period, when
//! the worktree or the git dir goes away, when its socket is removed, or on `stop`.

use std::fs;
use std::io::{self, BufRead as _, BufReader, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::watch::{ChangeLog, Seen, Stop, Tree};

/// Files in the worktree's state dir ([`super::state::state_dir`]).
pub(crate) const SOCKET: &str = "watcher.sock";
pub(crate) const LOCK: &str = "watcher.lock";
pub(crate) const COOKIES: &str = "cookies";
/// Why the watcher cannot run here (a limit, a network file system): the hook starts
/// none while it stands, and says it once.
pub(crate) const FAILED: &str = "watcher-failed";
/// Why the last watcher stopped early (an overflow): said once, then removed.
pub(crate) const NOTE: &str = "watcher-note";

/// `DBGUARD_FSMONITOR_WATCHER=0`: no watcher, the hook walks (crate::env lists it).
pub(crate) const WATCHER_VARIABLE: &str = "DBGUARD_FSMONITOR_WATCHER";
/// Seconds without a query before the watcher exits (default [`IDLE_DEFAULT`]).
pub(crate) const IDLE_VARIABLE: &str = "DBGUARD_FSMONITOR_IDLE";
const IDLE_DEFAULT: Duration = Duration::from_secs(30 * 60);

/// How often the watcher checks that its worktree, git dir and socket are still there.
const HOUSEKEEPING: Duration = Duration::from_secs(2);

/// How long a query waits for its cookie before answering "unknown" (the hook walks).
const COOKIE_WAIT: Duration = Duration::from_secs(2);

/// What the event thread shares with the query loop.
struct Shared {
    log: ChangeLog,
    /// The highest cookie number read back.
    cookie_seen: u64,
    watches: usize,
}

/// `dbguard-fsmonitor watch <worktree>`: run the watcher until a reason to stop.
pub(crate) fn watcher_main(worktree: &Path) -> std::process::ExitCode {
    // A new session: no controlling terminal, out of git's process group, so neither
    // the terminal's hang-up nor a ^C to git reaches it.
    let _ = nix::unistd::setsid();
    close_inherited_descriptors();
    match run(worktree) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::from(1),
    }
}

fn run(worktree: &Path) -> io::Result<()> {
    let (git_dir, _) = super::git_dirs(worktree)?;
    let state = super::state::state_dir(&git_dir)?;
    // An earlier build's state inside the git dir breaks git's own commands that compare
    // or copy git dirs; its watcher leaves once its socket is gone.
    let _ = fs::remove_dir_all(git_dir.join(super::LEGACY_STATE_DIR));
    let lock = fs::File::create(state.join(LOCK))?;
    if lock.try_lock().is_err() {
        // Another watcher serves this worktree already (or is starting).
        return Ok(());
    }
    if let Some(kind) = network_file_system(worktree) {
        fail(
            &state,
            &format!(
                "no file watcher: the worktree is on a network file system ({kind}), where inotify does not see changes made elsewhere; git status walks the worktree instead"
            ),
        );
        return Ok(());
    }
    let cookies = state.join(COOKIES);
    let _ = fs::remove_dir_all(&cookies);
    fs::create_dir_all(&cookies)?;
    let tree = match Tree::open(worktree, &cookies) {
        Ok(tree) => tree,
        Err(Stop::Limit(text)) => {
            fail(&state, &text);
            return Ok(());
        }
        Err(stop) => return Err(io::Error::other(stop.to_string())),
    };
    // Healthy here: a limit raised since the last attempt, or a move off NFS.
    let _ = fs::remove_file(state.join(FAILED));
    let _ = fs::remove_file(state.join(format!("{FAILED}.said")));
    let listener = bind(&state)?;
    let socket_identity = identity(&state.join(SOCKET));
    let shared = Arc::new((
        Mutex::new(Shared {
            log: ChangeLog::default(),
            cookie_seen: 0,
            watches: tree.watches(),
        }),
        Condvar::new(),
    ));
    let instance = format!(
        "{}.{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let last_query = Arc::new(Mutex::new(Instant::now()));
    {
        let (shared, state) = (Arc::clone(&shared), state.clone());
        std::thread::spawn(move || follow_events(tree, &shared, &state));
    }
    {
        let (last_query, state) = (Arc::clone(&last_query), state.clone());
        let (worktree, git_dir) = (worktree.to_path_buf(), git_dir.clone());
        std::thread::spawn(move || {
            housekeeping(&worktree, &git_dir, &state, socket_identity, &last_query)
        });
    }
    let server = Server {
        shared,
        cookies,
        instance,
        next_cookie: 0,
        started: Instant::now(),
        state,
    };
    server.serve(&listener, &last_query)
}

/// Bind the socket by a relative name from inside the state dir: a Unix socket path is
/// limited to 107 bytes, a worktree's path is not. Then leave the directory, so the
/// watcher pins no mount.
fn bind(state: &Path) -> io::Result<UnixListener> {
    std::env::set_current_dir(state)?;
    let _ = fs::remove_file(SOCKET);
    let listener = UnixListener::bind(SOCKET);
    std::env::set_current_dir("/")?;
    listener
}

/// `(device, inode)` of a file, to tell whether the socket is still this watcher's.
fn identity(path: &Path) -> Option<(u64, u64)> {
    fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Record why no watcher can run here; the hook says it once and starts none.
fn fail(state: &Path, why: &str) {
    let watches = super::watch::read_limit("max_user_watches").unwrap_or_default();
    let _ = fs::write(
        state.join(FAILED),
        format!("max_user_watches={watches}\n{why}\n"),
    );
}

/// Leave: remove the socket when it is still ours, so the hook stops asking.
fn exit(state: &Path, socket_identity: Option<(u64, u64)>) -> ! {
    let socket = state.join(SOCKET);
    if socket_identity.is_some() && identity(&socket) == socket_identity {
        let _ = fs::remove_file(socket);
    }
    std::process::exit(0)
}

/// The event thread: read events into the log until the tree stops, then exit.
fn follow_events(mut tree: Tree, shared: &(Mutex<Shared>, Condvar), state: &Path) {
    let socket_identity = identity(&state.join(SOCKET));
    let stop = loop {
        let events = match tree.read_events() {
            Ok(events) => events,
            Err(stop) => break stop,
        };
        let (lock, changed) = shared;
        let mut shared = lock.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut stopped = None;
        for event in &events {
            match tree.handle(event, &mut shared.log) {
                Ok(Seen::Cookie(n)) => shared.cookie_seen = shared.cookie_seen.max(n),
                Ok(Seen::Nothing) => {}
                Err(stop) => {
                    stopped = Some(stop);
                    break;
                }
            }
        }
        shared.watches = tree.watches();
        changed.notify_all();
        if let Some(stop) = stopped {
            break stop;
        }
    };
    match &stop {
        Stop::Limit(text) => fail(state, text),
        Stop::Overflow => {
            let _ = fs::write(state.join(NOTE), format!("{stop}\n"));
        }
        Stop::Gone | Stop::Io(_) => {}
    }
    exit(state, socket_identity)
}

/// Every few seconds: leave when idle, when the worktree or git dir is gone, or when the
/// socket is no longer ours (`dbguard uninstall` removed it, or a new watcher took over).
fn housekeeping(
    worktree: &Path,
    git_dir: &Path,
    state: &Path,
    socket_identity: Option<(u64, u64)>,
    last_query: &Mutex<Instant>,
) {
    let idle = std::env::var(IDLE_VARIABLE)
        .ok()
        .and_then(|secs| secs.parse().ok())
        .map_or(IDLE_DEFAULT, Duration::from_secs);
    loop {
        std::thread::sleep(HOUSEKEEPING.min(idle));
        let idle_for = last_query
            .lock()
            .map_or(Duration::ZERO, |last| last.elapsed());
        if idle_for >= idle
            || !worktree.is_dir()
            || !git_dir.is_dir()
            || identity(&state.join(SOCKET)) != socket_identity
        {
            exit(state, socket_identity);
        }
    }
}

struct Server {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    cookies: PathBuf,
    instance: String,
    next_cookie: u64,
    started: Instant,
    state: PathBuf,
}

impl Server {
    /// One request per connection, one connection at a time (each takes well under a
    /// millisecond; a client that sends nothing is cut off after a second).
    fn serve(mut self, listener: &UnixListener, last_query: &Mutex<Instant>) -> io::Result<()> {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            if let Ok(mut last) = last_query.lock() {
                *last = Instant::now();
            }
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
            let _ = self.reply(stream);
        }
        Ok(())
    }

    fn reply(&mut self, stream: UnixStream) -> io::Result<()> {
        let mut request = String::new();
        BufReader::new(&stream).read_line(&mut request)?;
        let request = request.trim_end_matches('\n');
        let mut out = io::BufWriter::new(&stream);
        if let Some(token) = request.strip_prefix("query ") {
            let answer = self.query(token);
            out.write_all(&answer)?;
        } else if request == "status" {
            let shared = self.lock();
            writeln!(
                out,
                "pid={} watches={} rss_kib={} uptime_s={} changes={}",
                std::process::id(),
                shared.watches,
                resident_kib().unwrap_or(0),
                self.started.elapsed().as_secs(),
                shared.log.end()
            )?;
        } else if request == "stop" {
            writeln!(out, "stopping")?;
            out.flush()?;
            exit(&self.state, identity(&self.state.join(SOCKET)));
        }
        out.flush()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The reply to `query <token>`, after the cookie handshake.
    fn query(&mut self, token: &str) -> Vec<u8> {
        let Some(now) = self.handshake() else {
            return b"unknown\n".to_vec();
        };
        let new_token = format!("{TOKEN_PREFIX}{}:{now}", self.instance);
        let from = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.rsplit_once(':'))
            .filter(|(instance, _)| *instance == self.instance)
            .and_then(|(_, number)| number.parse::<u64>().ok())
            .filter(|from| *from <= now);
        // Only what came before the cookie: later changes belong to the next answer.
        let paths = from.and_then(|from| self.lock().log.between(from, now));
        match paths {
            Some(paths) => {
                // The count lets the hook tell a whole reply from one cut short.
                let mut out = format!("exact {} {new_token}\n", paths.len()).into_bytes();
                for path in paths {
                    out.extend_from_slice(&path);
                    out.push(0);
                }
                out
            }
            None => format!("unknown {new_token}\n").into_bytes(),
        }
    }

    /// Create the next cookie and wait until the event thread read it: the log's end
    /// then, or `None` when it did not come in time.
    fn handshake(&mut self) -> Option<u64> {
        self.next_cookie += 1;
        let n = self.next_cookie;
        let cookie = self.cookies.join(n.to_string());
        fs::write(&cookie, "").ok()?;
        let deadline = Instant::now() + COOKIE_WAIT;
        let (_, seen) = &*self.shared;
        let mut shared = self.lock();
        let end = loop {
            if shared.cookie_seen >= n {
                break Some(shared.log.end());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break None;
            }
            shared = seen
                .wait_timeout(shared, left)
                .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard);
        };
        drop(shared);
        let _ = fs::remove_file(cookie);
        end
    }
}

/// Tokens of a watcher: `dbguard:w:<pid>.<start ns>:<change number>`.
pub(crate) const TOKEN_PREFIX: &str = "dbguard:w:";

/// This process's resident memory, from `/proc/self/status`.
fn resident_kib() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Close every descriptor above stderr that came from git (and whoever ran git): a
/// long-lived watcher holding someone's database file open would look like a writer to
/// them, and one holding a pipe would keep its reader waiting.
fn close_inherited_descriptors() {
    let Ok(listing) = fs::read_dir("/proc/self/fd") else {
        return;
    };
    let numbers: Vec<i32> = listing
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    // The listing's own descriptor is closed by now and fails with EBADF, harmlessly.
    for fd in numbers {
        let _ = nix::unistd::close(fd);
    }
}

/// The kind of network file system `path` is on, if it is on one.
fn network_file_system(path: &Path) -> Option<&'static str> {
    use nix::sys::statfs::{self, FsType};
    let kind = statfs::statfs(path).ok()?.filesystem_type();
    let known: &[(FsType, &str)] = &[
        (statfs::NFS_SUPER_MAGIC, "nfs"),
        (statfs::SMB_SUPER_MAGIC, "smb"),
        (statfs::AFS_SUPER_MAGIC, "afs"),
        (statfs::CODA_SUPER_MAGIC, "coda"),
        (statfs::NCP_SUPER_MAGIC, "ncp"),
        (statfs::FUSE_SUPER_MAGIC, "fuse (sshfs and the like)"),
    ];
    if let Some((_, name)) = known.iter().find(|(magic, _)| *magic == kind) {
        return Some(name);
    }
    // CIFS, SMB2, 9p and Ceph have no constant in nix.
    let raw = kind.0 as u64;
    match raw {
        0xFF53_4D42 => Some("cifs"),
        0xFE53_4D42 => Some("smb2"),
        0x0102_1997 => Some("9p"),
        0x00C3_6400 => Some("ceph"),
        _ => None,
    }
}
