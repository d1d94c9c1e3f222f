//! BuildKit's progress (`Control.Status`), as `PROGRESS` asks ([`Mode`]): `plain` the way
//! `buildctl --progress=plain` prints it (`#N name`, log lines with seconds since the step
//! started, then `DONE`, `CACHED` or `ERROR`), the default when stderr is not a terminal;
//! `tty` a view of the steps redrawn in place, the default on a terminal; `quiet` nothing
//! but a failed step's last lines.

use std::collections::HashMap;
use std::io::Write as _;

use kiln_proto::moby::buildkit::v1::StatusResponse;

#[derive(Default)]
struct Step {
    number: usize,
    name: String,
    started: Option<f64>,
    announced: bool,
    finished: bool,
}

/// Prints progress updates to stderr as they arrive.
#[derive(Default)]
pub struct PlainProgress {
    steps: HashMap<String, Step>,
    next: usize,
}

fn seconds(t: &Option<prost_types::Timestamp>) -> Option<f64> {
    t.as_ref().map(|t| t.seconds as f64 + t.nanos as f64 / 1e9)
}

impl PlainProgress {
    pub fn update(&mut self, status: &StatusResponse) {
        let mut err = std::io::stderr().lock();
        for v in &status.vertexes {
            let step = self
                .steps
                .entry(v.digest.clone())
                .or_insert_with(|| Step { name: v.name.clone(), ..Default::default() });
            if step.started.is_none() {
                step.started = seconds(&v.started);
            }
            if !step.announced && (v.started.is_some() || v.cached) {
                step.announced = true;
                self.next += 1;
                step.number = self.next;
                let _ = writeln!(err, "#{} {}", step.number, step.name);
            }
            if step.finished {
                continue;
            }
            if !v.error.is_empty() {
                step.finished = true;
                let _ = writeln!(err, "#{} ERROR: {}\n", step.number, v.error);
            } else if v.cached {
                step.finished = true;
                let _ = writeln!(err, "#{} CACHED\n", step.number);
            } else if let (Some(done), Some(start)) = (seconds(&v.completed), step.started) {
                step.finished = true;
                let _ = writeln!(err, "#{} DONE {:.1}s\n", step.number, (done - start).max(0.0));
            }
        }
        for log in &status.logs {
            let Some(step) = self.steps.get(&log.vertex) else { continue };
            let at = match (seconds(&log.timestamp), step.started) {
                (Some(t), Some(s)) => (t - s).max(0.0),
                _ => 0.0,
            };
            for line in String::from_utf8_lossy(&log.msg).lines() {
                let _ = writeln!(err, "#{} {at:.3} {line}", step.number);
            }
        }
        for warning in &status.warnings {
            let _ = writeln!(err, "WARNING: {}", String::from_utf8_lossy(&warning.short));
        }
    }
}

/// `PROGRESS`: how a build's steps are shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// `tty` when stderr is a terminal, else `plain`.
    #[default]
    Auto,
    /// Every step and log line, as `buildctl --progress=plain` (CI logs).
    Plain,
    /// A live view of the steps, redrawn in place, as buildx's on a terminal.
    Tty,
    /// Nothing, unless a step fails: then its last log lines.
    Quiet,
}

impl Mode {
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value {
            None | Some("auto") => Ok(Mode::Auto),
            Some("plain") => Ok(Mode::Plain),
            Some("tty") => Ok(Mode::Tty),
            Some("quiet") => Ok(Mode::Quiet),
            Some(other) => Err(format!("{other:?} is not auto, plain, tty or quiet")),
        }
    }
}

/// The log lines kept per step for `tty` and `quiet` (shown when it fails).
const KEPT_LINES: usize = 40;

/// One step as the `tty` and `quiet` views keep it.
#[derive(Default)]
struct Shown {
    name: String,
    started: Option<f64>,
    took: Option<f64>,
    cached: bool,
    error: Option<String>,
    logs: std::collections::VecDeque<String>,
}

/// The `tty` and `quiet` views: steps in the order they started, redrawn in place (`tty`)
/// or not shown at all (`quiet`); a failed step's last log lines are printed either way.
pub struct LiveProgress {
    redraw: bool,
    order: Vec<String>,
    steps: HashMap<String, Shown>,
    drawn: usize,
    begun: std::time::Instant,
    last_draw: Option<std::time::Instant>,
    failed_shown: std::collections::HashSet<String>,
}

impl LiveProgress {
    pub fn new(redraw: bool) -> Self {
        LiveProgress {
            redraw,
            order: Vec::new(),
            steps: HashMap::new(),
            drawn: 0,
            begun: std::time::Instant::now(),
            last_draw: None,
            failed_shown: Default::default(),
        }
    }

    pub fn update(&mut self, status: &StatusResponse) {
        for v in &status.vertexes {
            if !self.steps.contains_key(&v.digest) {
                if v.started.is_none() && !v.cached {
                    continue;
                }
                self.order.push(v.digest.clone());
            }
            let step = self.steps.entry(v.digest.clone()).or_default();
            step.name = v.name.clone();
            step.started = step.started.or(seconds(&v.started));
            step.cached |= v.cached;
            if let (Some(done), Some(start)) = (seconds(&v.completed), step.started) {
                step.took = Some((done - start).max(0.0));
            }
            if !v.error.is_empty() {
                step.error = Some(v.error.clone());
            }
        }
        for log in &status.logs {
            let Some(step) = self.steps.get_mut(&log.vertex) else { continue };
            for line in String::from_utf8_lossy(&log.msg).lines() {
                if step.logs.len() == KEPT_LINES {
                    step.logs.pop_front();
                }
                step.logs.push_back(line.to_string());
            }
        }
        let mut err = std::io::stderr().lock();
        for warning in &status.warnings {
            let _ = writeln!(err, "WARNING: {}", String::from_utf8_lossy(&warning.short));
            self.drawn = 0;
        }
        // At most ten redraws a second: a terminal is not a log.
        let due = self.last_draw.is_none_or(|t| t.elapsed() >= std::time::Duration::from_millis(100));
        if self.redraw && due {
            self.draw(&mut err);
        }
        self.show_failures(&mut err);
    }

    /// The view once more, complete, when the build has ended.
    pub fn finish(&mut self) {
        let mut err = std::io::stderr().lock();
        if self.redraw {
            self.draw(&mut err);
        }
        self.show_failures(&mut err);
    }

    fn draw(&mut self, err: &mut std::io::StderrLock<'_>) {
        let mut text = String::new();
        if self.drawn > 0 {
            // Back to the view's first line, and clear everything below.
            text.push_str(&format!("\x1b[{}F\x1b[J", self.drawn));
        }
        let done = self.order.iter().filter(|d| self.steps[*d].took.is_some() || self.steps[*d].cached).count();
        text.push_str(&format!(
            "[+] Building {:.1}s ({done}/{})\n",
            self.begun.elapsed().as_secs_f64(),
            self.order.len()
        ));
        let mut lines = 1;
        // The view must fit the terminal, or moving back up cannot reach its first line:
        // the latest steps are shown, and how many earlier ones are not.
        let rows = rustix::termios::tcgetwinsize(std::io::stderr()).map(|w| w.ws_row as usize).unwrap_or(0);
        let room = if rows > 3 { rows - 3 } else { usize::MAX };
        let hidden = self.order.len().saturating_sub(room);
        if hidden > 0 {
            let steps = if hidden == 1 { "step" } else { "steps" };
            text.push_str(&format!(" => … {hidden} earlier {steps}\n"));
            lines += 1;
        }
        for digest in &self.order[hidden..] {
            let step = &self.steps[digest];
            let state = match (&step.error, step.cached, step.took) {
                (Some(_), _, _) => "ERROR ".to_string(),
                (None, true, _) => "CACHED ".to_string(),
                _ => String::new(),
            };
            let time = step.took.map(|t| format!(" {t:.1}s")).unwrap_or_default();
            text.push_str(&format!(" => {state}{}{time}\n", step.name));
            lines += 1;
            // A running step shows its last lines, while there is room.
            if step.took.is_none() && !step.cached && step.error.is_none() && hidden == 0 && lines + 3 < room {
                for line in step.logs.iter().rev().take(3).collect::<Vec<_>>().into_iter().rev() {
                    text.push_str(&format!(" => => {line}\n"));
                    lines += 1;
                }
            }
        }
        let _ = err.write_all(text.as_bytes());
        let _ = err.flush();
        self.drawn = lines;
        self.last_draw = Some(std::time::Instant::now());
    }

    fn show_failures(&mut self, err: &mut std::io::StderrLock<'_>) {
        for digest in &self.order {
            let step = &self.steps[digest];
            let Some(error) = &step.error else { continue };
            if !self.failed_shown.insert(digest.clone()) {
                continue;
            }
            let _ = writeln!(err, "------\n > {}:", step.name);
            for line in &step.logs {
                let _ = writeln!(err, "{line}");
            }
            let _ = writeln!(err, "------\nERROR: {error}");
            // What follows is below the view: the next draw starts afresh.
            self.drawn = 0;
        }
    }
}

/// Whether the session prints what it sent of each folder (`build: context: sent …`):
/// yes in the plain view, whose log it belongs to; no in the live and quiet ones, which a
/// line of its own would break or clutter.
static TRANSFER_NOTES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

pub fn transfer_notes() -> bool {
    TRANSFER_NOTES.load(std::sync::atomic::Ordering::Relaxed)
}

/// The view a build prints, as `PROGRESS` (`mode`) says.
pub enum Progress {
    Plain(PlainProgress),
    Live(LiveProgress),
}

impl Progress {
    pub fn new(mode: Mode) -> Self {
        use std::io::IsTerminal as _;
        let progress = match mode {
            Mode::Plain => Progress::Plain(PlainProgress::default()),
            Mode::Auto if !std::io::stderr().is_terminal() => Progress::Plain(PlainProgress::default()),
            Mode::Auto | Mode::Tty => Progress::Live(LiveProgress::new(true)),
            Mode::Quiet => Progress::Live(LiveProgress::new(false)),
        };
        TRANSFER_NOTES.store(matches!(progress, Progress::Plain(_)), std::sync::atomic::Ordering::Relaxed);
        progress
    }

    pub fn update(&mut self, status: &StatusResponse) {
        match self {
            Progress::Plain(p) => p.update(status),
            Progress::Live(p) => p.update(status),
        }
    }

    pub fn finish(&mut self) {
        if let Progress::Live(p) = self {
            p.finish();
        }
    }
}
