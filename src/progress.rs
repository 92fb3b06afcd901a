//! Progress on a terminal: one spinner per running step, cleared when it
//! ends. Silent when stderr is not a terminal (schedulers, CI, pipes), where
//! the structured log lines say the same.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

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
