//! `cargo xtask report-shot [--out FILE.png] [--plan PLAN] [--seed N]`: builds the CLI, runs
//! `tranche execute PLAN --report target/report/run.html` on the embedded simulator, and renders
//! the page with headless Chromium to a PNG (default `target/report/run.png`) so that a person
//! can look at the report without a browser. Installs Debian's `chromium` when it is missing.
//!
//! Invariants: Chromium runs with a fresh, throw-away profile and every background network
//! feature off (the page itself loads nothing); a Chromium that hangs is killed after a deadline.

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

/// A window tall enough for the whole report at 1280 px wide: the header and summary, a row per
/// item, a section per chart (each chart is 1100 x 380 in a 1180 px column, plus its heading),
/// with a margin; headless Chromium captures only the window, so a short one cuts the page.
fn page_height(html: &str) -> u32 {
    let count = |needle: &str| u32::try_from(html.matches(needle).count()).unwrap_or(u32::MAX);
    let height = 700u32
        .saturating_add(count("<tr>").saturating_mul(36))
        .saturating_add(count("<svg class=\"chart\"").saturating_mul(520));
    height.min(16_000)
}

/// Renders `page` to `out` with headless Chromium in a fresh profile.
fn screenshot(chromium: &Path, page: &Path, out: &Path) -> Result<(), String> {
    let html = std::fs::read_to_string(page).map_err(|e| format!("cannot read {}: {e}", page.display()))?;
    let profile = std::env::temp_dir().join(format!("tranche-report-shot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).map_err(|e| format!("cannot create {}: {e}", profile.display()))?;
    let _ = std::fs::remove_file(out);
    let mut child = Command::new(chromium)
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
        .arg(format!("--window-size=1280,{}", page_height(&html)))
        .arg(format!("--screenshot={}", out.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", chromium.display()))?;
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if started.elapsed() > RENDER_DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("Chromium did not finish within {}s", RENDER_DEADLINE.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => break Err(format!("waiting for Chromium: {e}")),
        }
    };
    let _ = std::fs::remove_dir_all(&profile);
    let status = status?;
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
    fn the_window_grows_with_the_report() {
        let small = page_height("<table><tr></tr></table>");
        let charts = "<svg class=\"chart\"></svg>".repeat(5);
        let large = page_height(&format!("<table>{}</table>{charts}", "<tr></tr>".repeat(6)));
        assert!(large >= small + 5 * 520, "{small} {large}");
        assert_eq!(page_height(&"<svg class=\"chart\">".repeat(1000)), 16_000, "bounded");
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
