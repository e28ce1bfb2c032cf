//! A program run on a pseudo-terminal, as a person runs it: dbguard asks its questions
//! there (`/dev/tty`), and the test answers them. Python's `pty` module holds the
//! terminal (no extra crate): it copies what the program writes into a log file the test
//! reads, and what the test sends into the terminal.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The terminal's side: fork the program on a pty, log its output, pass our stdin on;
/// exit with the program's status (128 + signal when killed).
const HOLDER: &str = r#"
import os, pty, select, sys
log = open(sys.argv[1], "ab", buffering=0)
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
inputs = [fd, 0]
while True:
    ready, _, _ = select.select(inputs, [], [], 0.05)
    if fd in ready:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            break
        log.write(data)
    if 0 in ready:
        data = os.read(0, 65536)
        if data:
            os.write(fd, data)
        else:
            inputs.remove(0)
_, status = os.waitpid(pid, 0)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"#;

/// A program running on a terminal of its own.
pub struct Pty {
    child: Child,
    input: Option<ChildStdin>,
    log: PathBuf,
}

impl Pty {
    /// Start `argv` on a new terminal; `holder` is a `python3` command with the
    /// environment and directory the program should get (its stdio is replaced).
    pub fn spawn(mut holder: Command, log: &Path, argv: &[&str]) -> Pty {
        let _ = std::fs::remove_file(log);
        let child = holder
            .arg("-c")
            .arg(HOLDER)
            .arg(log)
            .args(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the terminal");
        let mut pty = Pty {
            child,
            input: None,
            log: log.to_path_buf(),
        };
        pty.input = pty.child.stdin.take();
        pty
    }

    /// Everything the program wrote to its terminal so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Wait until the program has written `text`; the output so far. Panics (with the
    /// output) after `timeout`.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let output = self.output();
            if output.contains(text) {
                return output;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} did not appear within {timeout:?}; the terminal shows:\n{output}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Type `keys` on the terminal.
    pub fn send(&mut self, keys: &str) {
        let input = self.input.as_mut().expect("the terminal is open");
        input.write_all(keys.as_bytes()).unwrap();
        input.flush().unwrap();
    }

    /// Wait for the program to end: its exit code and everything it wrote. Panics (after
    /// killing it) when it runs longer than `timeout`.
    pub fn finish(mut self, timeout: Duration) -> (i32, String) {
        drop(self.input.take());
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), self.output());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "still running after {timeout:?}; the terminal shows:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        // A test that failed halfway leaves no program waiting for an answer.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
