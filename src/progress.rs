//! Progress of a run: one spinner per running step on a terminal, cleared
//! when it ends (silent when stderr is not a terminal: schedulers, CI,
//! pipes), and the log lines logged at the default verbosity under
//! [`TARGET`]: one per step (name, rows, seconds) and one summary per run,
//! so a scheduler's task log shows what happened (as dbt's one line per
//! model).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// The log target of the per-step and summary lines: on at the default
/// level, off with `-q`.
pub const TARGET: &str = "custval::progress";

/// A spinner for one step; hidden unless stderr is a terminal.
pub fn step(name: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
        pb.set_style(style);
    }
    pb.set_message(name.to_string());
    // Draw at once: short steps would otherwise end before the first tick.
    pb.tick();
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}
