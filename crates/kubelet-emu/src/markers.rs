//! The marker files `emu-app` writes and tests read: which copies act now, and a
//! history of starts and stops.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::sys::alive;

/// Appends one line to `DIR/history` (one `write` per line, O_APPEND: atomic).
pub fn append_history(dir: &Path, line: &str) {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("history"))
    {
        let _ = f.write_all(format!("{t} {line}\n").as_bytes());
    }
}

/// Reads `DIR/history` as lines of (microseconds since epoch, text).
pub fn history(dir: &Path) -> Vec<(u128, String)> {
    fs::read_to_string(dir.join("history"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (t, rest) = l.split_once(' ')?;
            Some((t.parse().ok()?, rest.to_string()))
        })
        .collect()
}

/// Live acting markers: (container, pid) for each `acting.<container>.<pid>` whose process lives.
pub fn live_acting(dir: &Path) -> Vec<(String, u32)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return vec![];
    };
    let mut out = vec![];
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("acting.") else {
            continue;
        };
        let Some((container, pid)) = rest.rsplit_once('.') else {
            continue;
        };
        if let Ok(pid) = pid.parse::<u32>()
            && alive(pid)
        {
            out.push((container.to_string(), pid));
        }
    }
    out.sort();
    out
}
