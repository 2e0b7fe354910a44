//! What a person at a terminal sees: a spinner naming the phase while a run works, a
//! coloured check table, and logs. Logs go to stderr at the level `-v`/`-vv` asks for,
//! and always, at debug level and without colour, to a log file per invocation under
//! the cache directory. Nothing here draws when stderr is not a terminal or with
//! `--quiet`, so CI logs keep only the plain progress lines.
//!
//! The engine does not know about the spinner: it announces each phase as a tracing
//! event with target [`PHASE_TARGET`], and a layer here turns those into the spinner's
//! message.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use microseg_harness::run::PHASE_TARGET;

fn spinner() -> &'static ProgressBar {
    static BAR: OnceLock<ProgressBar> = OnceLock::new();
    BAR.get_or_init(|| ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden()))
}

/// Shows the spinner on stderr (a no-op when stderr is not a terminal, as indicatif
/// hides itself there) with a first message.
pub fn start_spinner(message: &str) {
    let bar = spinner();
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("literal template"));
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
}

/// Colours a check's status word (a [`microseg_harness::report::Paint`]): green pass, bold red
/// fail, yellow divergence, dim skipped. `console` leaves it plain unless stdout is a
/// terminal and `NO_COLOR` is unset.
pub fn paint_status(status: microseg_harness::checks::Status, word: String) -> String {
    use microseg_harness::checks::Status;
    let styled = match status {
        Status::Pass => console::style(word).green(),
        Status::Fail => console::style(word).red().bold(),
        Status::Divergence => console::style(word).yellow(),
        Status::Skipped => console::style(word).dim(),
    };
    styled.to_string()
}

/// Removes the spinner.
pub fn stop_spinner() {
    spinner().finish_and_clear();
}

struct PhaseVisitor(Option<String>);

impl Visit for PhaseVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "phase" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "phase" {
            self.0 = Some(format!("{value:?}").trim_matches('"').to_string());
        }
    }
}

struct SpinnerLayer;

impl<S: tracing::Subscriber> Layer<S> for SpinnerLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != PHASE_TARGET {
            return;
        }
        let mut v = PhaseVisitor(None);
        event.record(&mut v);
        if let Some(phase) = v.0 {
            spinner().set_message(phase);
        }
    }
}

/// The log file of this invocation, once [`init`] has opened it.
pub fn log_file() -> Option<&'static PathBuf> {
    LOG_FILE.get()
}

static LOG_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Sets up logging: stderr at `verbose` (0 warn, 1 info, 2+ debug; `MICROSEG_LOG`
/// overrides with an env-filter), the log file at debug for microseg's own crates only
/// (never the SDK's, whose debug output describes requests), and the spinner's layer.
pub fn init(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let stderr_filter = EnvFilter::try_from_env("MICROSEG_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "microseg_cli={level},microseg_harness={level},microseg_reach={level},{PHASE_TARGET}={level}"
        ))
    });
    let stderr = tracing_subscriber::fmt::layer().with_writer(|| SpinnerSafeStderr).with_filter(stderr_filter);
    let file = open_log_file().map(|(path, f)| {
        let _ = LOG_FILE.set(path);
        tracing_subscriber::fmt::layer().with_ansi(false).with_writer(Mutex::new(f)).with_filter(EnvFilter::new(
            format!("microseg_cli=debug,microseg_harness=debug,microseg_reach=debug,{PHASE_TARGET}=debug"),
        ))
    });
    let spinner = SpinnerLayer.with_filter(tracing_subscriber::filter::filter_fn(|m| m.target() == PHASE_TARGET));
    let _ = tracing_subscriber::registry().with(stderr).with(file).with(spinner).try_init();
}

/// Log files kept; older ones are removed when a new one is opened.
const KEEP_LOGS: usize = 100;

fn open_log_file() -> Option<(PathBuf, std::fs::File)> {
    let dir = microseg_harness::target::python::cache_dir().join("logs");
    std::fs::create_dir_all(&dir).ok()?;
    prune(&dir);
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let path = dir.join(format!("microseg-{stamp}-{}.log", std::process::id()));
    let f = std::fs::File::create(&path).ok()?;
    Some((path, f))
}

/// Stderr that suspends the spinner while a log line is written, so lines and spinner
/// do not tear each other.
struct SpinnerSafeStderr;

impl std::io::Write for SpinnerSafeStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        spinner().suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Removes all but the newest [`KEEP_LOGS`] - 1 log files (names sort by time).
fn prune(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("microseg-") && n.ends_with(".log"))
        })
        .collect();
    logs.sort();
    let excess = logs.len().saturating_sub(KEEP_LOGS - 1);
    for old in &logs[..excess] {
        let _ = std::fs::remove_file(old);
    }
}
