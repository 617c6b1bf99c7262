//! `cargo xtask report-shot [--out FILE.png] [--plan PLAN] [--seed N]`: builds the CLI, runs
//! `tranche execute PLAN --report target/report/run.html` on the embedded simulator, and renders
//! the page with headless Chromium to a PNG (default `target/report/run.png`) so that a person
//! can look at the report without a browser. Installs Debian's `chromium` when it is missing.
//!
//! The whole page is captured: headless Chromium captures only its window, so a first pass lays
//! out a throw-away copy of the page (the report allows no scripts; the copy adds one that writes
//! the document's height into the DOM) at the screenshot's width and dumps the DOM, and the
//! second pass captures a window of exactly that height.
//!
//! Invariants: Chromium runs with a fresh, throw-away profile and every background network
//! feature off (the page itself loads nothing); a Chromium that hangs is killed after a deadline;
//! the report itself is never changed (the measuring copy is a temporary file).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long Chromium may take to render one page.
const RENDER_DEADLINE: Duration = Duration::from_secs(120);

/// What `report-shot` was asked for.
#[derive(Debug)]
struct Options {
    out: PathBuf,
    plan: PathBuf,
    seed: Option<String>,
}

fn parse(args: &[String], root: &Path) -> Result<Options, String> {
    let mut options =
        Options { out: root.join("target/report/run.png"), plan: root.join("examples/plan.json"), seed: None };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--out" => options.out = absolute(root, &value("--out")?),
            "--plan" => options.plan = absolute(root, &value("--plan")?),
            "--seed" => options.seed = Some(value("--seed")?),
            other => {
                return Err(format!("unknown argument `{other}` (expected --out FILE.png, --plan PLAN, --seed N)"))
            }
        }
    }
    Ok(options)
}

fn absolute(root: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().unwrap_or_else(|_| root.to_owned()).join(path)
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// The Chromium binary on PATH, if any.
fn find_chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser"].into_iter().find_map(|name| {
        let out = Command::new("which").arg(name).output().ok()?;
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
    })
}

/// Chromium, installed from Debian's packages when missing.
fn ensure_chromium() -> Result<PathBuf, String> {
    if let Some(path) = find_chromium() {
        return Ok(path);
    }
    eprintln!("==> installing Chromium: apt-get update && apt-get install -y chromium");
    let apt = |args: &[&str]| {
        Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").stdout(Stdio::null()).status()
    };
    let installed = apt(&["update", "-qq"]).is_ok_and(|s| s.success())
        && apt(&["install", "-y", "-qq", "--no-install-recommends", "chromium"]).is_ok_and(|s| s.success());
    match find_chromium() {
        Some(path) if installed => Ok(path),
        _ => Err("Chromium is missing and `apt-get install -y chromium` failed (it needs root); install it and retry"
            .to_owned()),
    }
}

/// The width the page is laid out and captured at.
const WIDTH: u32 = 1280;

/// The tallest capture (a bound against a runaway page).
const MAX_HEIGHT: u32 = 30_000;

/// The measuring copy of a report: its content-security policy (which forbids scripts) taken
/// out, and a script that writes the laid-out document's height into an attribute of `<html>`.
fn measuring_copy(html: &str) -> String {
    let without_policy: String = {
        let mut out = String::with_capacity(html.len());
        let mut rest = html;
        while let Some(start) = rest.find("<meta http-equiv=\"Content-Security-Policy\"") {
            out.push_str(&rest[..start]);
            rest = rest[start..].find('>').map_or("", |end| &rest[start + end + 1..]);
        }
        out.push_str(rest);
        out
    };
    let probe = "<script>document.documentElement.setAttribute('data-page-height', \
                 Math.ceil(document.documentElement.getBoundingClientRect().height))</script>";
    match without_policy.rfind("</body>") {
        Some(at) => format!("{}{probe}{}", &without_policy[..at], &without_policy[at..]),
        None => format!("{without_policy}{probe}"),
    }
}

/// The height a dumped DOM reports (`data-page-height` on `<html>`), bounded.
fn measured_height(dom: &str) -> Option<u32> {
    let at = dom.find("data-page-height=\"")? + "data-page-height=\"".len();
    let digits: String = dom[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse::<u32>().ok().map(|h| h.clamp(200, MAX_HEIGHT))
}

/// Chromium with a fresh profile and every background feature off.
fn chromium_command(chromium: &Path, profile: &Path, height: u32) -> Command {
    let mut command = Command::new(chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={WIDTH},{height}"));
    command
}

/// Waits for `child` at most the render deadline; its exit status.
fn wait_bounded(child: &mut std::process::Child) -> Result<std::process::ExitStatus, String> {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if started.elapsed() > RENDER_DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("Chromium did not finish within {}s", RENDER_DEADLINE.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("waiting for Chromium: {e}")),
        }
    }
}

/// The laid-out height of `html` at the capture width, measured by Chromium.
fn measure(chromium: &Path, profile: &Path, html: &str) -> Result<u32, String> {
    let copy = profile.join("measure.html");
    std::fs::write(&copy, measuring_copy(html)).map_err(|e| format!("cannot write {}: {e}", copy.display()))?;
    let dom = profile.join("measure.dom");
    let file = std::fs::File::create(&dom).map_err(|e| format!("cannot write {}: {e}", dom.display()))?;
    let mut child = chromium_command(chromium, &profile.join("measure-profile"), 800)
        .arg("--dump-dom")
        .arg(format!("file://{}", copy.display()))
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", chromium.display()))?;
    wait_bounded(&mut child)?;
    let dumped = std::fs::read_to_string(&dom).map_err(|e| format!("cannot read {}: {e}", dom.display()))?;
    measured_height(&dumped).ok_or_else(|| "Chromium did not report the page's height".to_owned())
}

/// Renders the whole of `page` to `out` with headless Chromium in a fresh profile.
fn screenshot(chromium: &Path, page: &Path, out: &Path) -> Result<(), String> {
    let html = std::fs::read_to_string(page).map_err(|e| format!("cannot read {}: {e}", page.display()))?;
    let profile = std::env::temp_dir().join(format!("tranche-report-shot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).map_err(|e| format!("cannot create {}: {e}", profile.display()))?;
    let _ = std::fs::remove_file(out);
    let captured = measure(chromium, &profile, &html).and_then(|height| {
        let mut child = chromium_command(chromium, &profile.join("capture-profile"), height)
            .arg(format!("--screenshot={}", out.display()))
            .arg(format!("file://{}", page.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", chromium.display()))?;
        wait_bounded(&mut child)
    });
    let _ = std::fs::remove_dir_all(&profile);
    let status = captured?;
    match std::fs::metadata(out) {
        Ok(meta) if meta.len() > 0 => Ok(()),
        _ => Err(format!("Chromium ({status}) wrote no screenshot to {}", out.display())),
    }
}

/// `cargo xtask report-shot ARGS`: prints the PNG's path, or the error.
pub fn main(args: &[String]) -> std::process::ExitCode {
    match report_shot(args) {
        Ok(png) => {
            println!("{}", png.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("report-shot: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Builds, runs and renders; returns the PNG's path.
fn report_shot(args: &[String]) -> Result<PathBuf, String> {
    let root = workspace_root();
    let options = parse(args, &root)?;
    eprintln!("==> building the CLI (cargo build -p tranche-cli)");
    run(Command::new("cargo").args(["build", "-p", "tranche-cli"]).current_dir(&root), "cargo build")?;
    let report = root.join("target/report/run.html");
    if let Some(dir) = report.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if let Some(dir) = options.out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut execute = Command::new(root.join("target/debug/tranche"));
    execute.arg("execute").arg(&options.plan).arg("--report").arg(&report).arg("--quiet").stdout(Stdio::null());
    if let Some(seed) = &options.seed {
        execute.args(["--seed", seed]);
    }
    eprintln!("==> tranche execute {} --report {}", options.plan.display(), report.display());
    let status = execute.status().map_err(|e| format!("cannot run tranche: {e}"))?;
    // 0 success, 2 partial success, 3 failure: each still writes its report.
    if !matches!(status.code(), Some(0 | 2 | 3)) {
        return Err(format!("tranche execute failed ({status})"));
    }
    let chromium = ensure_chromium()?;
    eprintln!("==> rendering with {}", chromium.display());
    screenshot(&chromium, &report, &options.out)?;
    Ok(options.out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_measuring_copy_may_run_its_probe_and_the_report_is_not_touched() {
        let report = "<html><head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\">\
                      <title>t</title></head><body><p>x</p></body></html>";
        let copy = measuring_copy(report);
        assert!(!copy.contains("Content-Security-Policy"), "{copy}");
        assert!(copy.contains("<title>t</title>"));
        let probe = copy.find("data-page-height").unwrap();
        assert!(probe < copy.find("</body>").unwrap(), "the probe runs once the body is laid out");
        assert!(report.contains("Content-Security-Policy"));
    }

    #[test]
    fn the_height_is_read_from_the_dumped_dom_and_bounded() {
        assert_eq!(measured_height("<html lang=\"en\" data-page-height=\"4321\"><head>"), Some(4321));
        assert_eq!(measured_height("<html data-page-height=\"999999\">"), Some(MAX_HEIGHT));
        assert_eq!(measured_height("<html>"), None);
    }

    #[test]
    fn arguments_table() {
        let root = Path::new("/repo");
        let defaults = parse(&[], root).unwrap();
        assert_eq!(defaults.out, Path::new("/repo/target/report/run.png"));
        assert_eq!(defaults.plan, Path::new("/repo/examples/plan.json"));
        let given = parse(&strings(&["--out", "/tmp/x.png", "--seed", "7"]), root).unwrap();
        assert_eq!((given.out.as_path(), given.seed.as_deref()), (Path::new("/tmp/x.png"), Some("7")));
        assert!(parse(&strings(&["--out"]), root).unwrap_err().contains("needs a value"));
        assert!(parse(&strings(&["--bogus"]), root).unwrap_err().contains("unknown argument"));
    }
}
