//! Log file: details for admins, one line per event.
//!
//! The one-line error a runtime shows comes from `main`; everything else
//! (what was resolved, created, skipped) goes here when a log file is
//! configured. Without one, warnings go to stderr and the rest is dropped.
//!
//! Container-controlled text reaches a message only through
//! [`crate::request::shown`] (escaped and cut where it is put in). As a last
//! line of defence every message is also made [`one_line`] here and in `main`'s
//! error line, so a path or error text that slipped through unescaped can still
//! never forge a second line.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "error" => Ok(Level::Error),
            "warn" => Ok(Level::Warn),
            "info" => Ok(Level::Info),
            "debug" => Ok(Level::Debug),
            _ => Err(format!("unknown log level '{s}' (error, warn, info, debug)")),
        }
    }
}

struct Logger {
    file: Option<PathBuf>,
    level: Level,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets the destination once; later calls are ignored.
pub fn init(file: Option<PathBuf>, level: Level) {
    let _ = LOGGER.set(Logger { file, level });
}

/// `msg` with every control character escaped (`\n` as `\\n`): one line, always.
/// Borrowed when there is nothing to escape, as for nearly every message.
pub fn one_line(msg: &str) -> std::borrow::Cow<'_, str> {
    if !msg.chars().any(char::is_control) {
        return msg.into();
    }
    msg.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect()
}

pub fn log(level: Level, msg: &str) {
    let msg = &*one_line(msg);
    let Some(logger) = LOGGER.get() else {
        // Errors reach stderr once, from main.
        if level == Level::Warn {
            eprintln!("mighook: warning: {msg}");
        }
        return;
    };
    if level > logger.level {
        return;
    }
    match &logger.file {
        Some(path) => {
            let line = format!("{} mighook[{}] {:?}: {msg}\n", unix_time(), std::process::id(), level);
            // Opened per line: the hook logs a handful of lines per start.
            if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
                let _ = f.write_all(line.as_bytes());
            }
        }
        None if level == Level::Warn => eprintln!("mighook: warning: {msg}"),
        None => {}
    }
}

fn unix_time() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// A warning for the log file only, never stderr: for what NVIDIA's toolkit also
/// only logs (a driver file the host lacks), which would be noise on every start.
pub fn file_warn(msg: &str) {
    if LOGGER.get().is_some_and(|l| l.file.is_some()) {
        log(Level::Warn, msg)
    }
}

pub fn warn(msg: &str) {
    log(Level::Warn, msg)
}
pub fn info(msg: &str) {
    log(Level::Info, msg)
}
pub fn debug(msg: &str) {
    log(Level::Debug, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_escapes_control_characters_only() {
        assert_eq!(one_line("a b: \"c\" é"), "a b: \"c\" é");
        assert_eq!(one_line("a\nmighook: forged\r\u{1b}[2J"), "a\\nmighook: forged\\r\\u{1b}[2J");
    }
}
