//! Step timings for people measuring dbguard: off by default, on with `DBGUARD_TIMING=1`
//! (`dbguard config` lists it), one `timing: <step> <elapsed>` line per step on stderr.
//! The one way base modules report anything on their own; everything else they say goes
//! up as values and errors, to `Ui`.

use std::time::Instant;

/// A clock started at a step's beginning; [`Timer::done`] prints how long it took.
#[derive(Clone, Copy)]
pub(crate) struct Timer {
    started: Instant,
    on: bool,
}

/// Start timing (reads the switch once, so a timer costs one `Instant::now()` when off).
pub(crate) fn start() -> Timer {
    Timer {
        started: Instant::now(),
        on: crate::env::timing(),
    }
}

impl Timer {
    /// `timing: <step> <time since start>`, when timings are on.
    pub(crate) fn done(&self, step: &str) {
        if self.on {
            eprintln!("timing: {step} {:?}", self.started.elapsed());
        }
    }
}
