//! The official Python SDK beside Tranche's quote decoder. `cargo xtask bench` runs
//! `xtask/python/alpaca_py_decode.py` in a virtualenv under the target directory holding a pinned
//! `alpaca-py`, on the frames the criterion codec bench of `tranche-pricing` decoded in the same run
//! (`target/bench-results/quote-frames.json`), and the page shows both rates and their ratio. When
//! Python or PyPI is not there, the page says so and why; no figure is invented.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::bench::{criterion_result, human_rate};

/// The alpaca-py release measured: the newest on PyPI when the comparison was written. Raise it
/// deliberately; the virtualenv is reinstalled when it changes.
const ALPACA_PY: &str = "0.44.0";

/// alpaca-py's decode rates over the codec bench's frames, one core, best repetition.
pub struct Measurement {
    /// The alpaca-py version that ran, as its package metadata says.
    version: String,
    /// Python, pydantic and msgpack versions.
    runtime: String,
    /// Quotes per second from JSON frames (`json.loads`, then `Quote(symbol, msg)` per quote).
    json: f64,
    /// Quotes per second from msgpack frames (the SDK's live-stream `unpackb` and `_cast`).
    msgpack: f64,
    /// Frames the codec bench wrote.
    frames: u64,
    /// Quotes in those frames.
    quotes_per_pass: u64,
    /// Quotes decoded per repetition (every frame, several passes).
    quotes: u64,
    /// Repetitions timed; the fastest counts.
    repetitions: u64,
}

/// Runs `program args`, showing the command; stdout on success, else the status and the last
/// line the program wrote on stderr (Python's exception, pip's error).
fn output(program: &Path, args: &[&str]) -> Result<String, String> {
    eprintln!("==> {} {}", program.display(), args.join(" "));
    let out =
        Command::new(program).args(args).output().map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim();
    Err(format!("`{} {}` failed ({}): {last}", program.display(), args.join(" "), out.status))
}

/// The virtualenv's interpreter, creating the virtualenv and installing the pinned alpaca-py
/// when they are missing or hold another version.
pub(crate) fn interpreter(target: &Path) -> Result<PathBuf, String> {
    let venv = target.join("bench-venv");
    let python = if cfg!(windows) { venv.join("Scripts").join("python.exe") } else { venv.join("bin").join("python") };
    if !python.exists() {
        let venv_arg = venv.to_string_lossy();
        output(Path::new("python3"), &["-m", "venv", &venv_arg])
            .map_err(|e| format!("cannot create a Python virtualenv: {e}"))?;
    }
    let installed = output(&python, &["-c", "import importlib.metadata as m; print(m.version('alpaca-py'))"]);
    if installed.as_deref().map(str::trim) != Ok(ALPACA_PY) {
        let requirement = format!("alpaca-py=={ALPACA_PY}");
        output(&python, &["-m", "pip", "install", "--quiet", "--disable-pip-version-check", &requirement])
            .map_err(|e| format!("cannot install {requirement} from PyPI into {}: {e}", venv.display()))?;
    }
    Ok(python)
}

/// Times alpaca-py on the frames the codec bench wrote in this run (`quick`: fewer repetitions).
pub fn measure(root: &Path, target: &Path, quick: bool) -> Result<Measurement, String> {
    let frames = target.join("bench-results").join("quote-frames.json");
    if !frames.exists() {
        return Err(format!("the codec bench wrote no frames at {}", frames.display()));
    }
    let python = interpreter(target)?;
    let script = root.join("xtask").join("python").join("alpaca_py_decode.py");
    let (script, frames) = (script.to_string_lossy(), frames.to_string_lossy());
    let mut args = vec![&*script, "--frames", &*frames];
    if quick {
        args.push("--quick");
    }
    let out = output(&python, &args)?;
    let report: Value = serde_json::from_str(out.trim()).map_err(|e| format!("alpaca-py decode output: {e}"))?;
    let field = |path: &[&str]| path.iter().fold(&report, |v, key| &v[key]);
    let rate = |format: &str| {
        field(&[format, "quotes_per_sec"])
            .as_f64()
            .filter(|r| r.is_finite() && *r > 0.0)
            .ok_or_else(|| format!("alpaca-py decode output has no {format} rate: {out}"))
    };
    let count =
        |key: &str| field(&[key]).as_u64().ok_or_else(|| format!("alpaca-py decode output has no {key}: {out}"));
    let text = |path: &[&str]| field(path).as_str().unwrap_or("unknown").to_owned();
    let version = text(&["alpaca_py"]);
    if version != ALPACA_PY {
        return Err(format!("the virtualenv ran alpaca-py {version}, not the pinned {ALPACA_PY}"));
    }
    let quotes_per_pass = count("quotes_per_pass")?;
    Ok(Measurement {
        version,
        runtime: format!(
            "Python {}, pydantic {}, msgpack {}",
            text(&["versions", "python"]),
            text(&["versions", "pydantic"]),
            text(&["versions", "msgpack"])
        ),
        json: rate("json")?,
        msgpack: rate("msgpack")?,
        frames: count("frames")?,
        quotes_per_pass,
        quotes: quotes_per_pass * count("passes")?,
        repetitions: count("repetitions")?,
    })
}

/// Writes the comparison under the criterion table: Tranche's rates from criterion's estimates of
/// this run beside alpaca-py's and the ratio, or why alpaca-py was not measured.
pub fn render(page: &mut String, target: &Path, measured: &Result<Measurement, String>) -> Result<(), String> {
    page.push_str("\n### Against the official Python SDK (alpaca-py)\n\n");
    let m = match measured {
        Ok(m) => m,
        Err(reason) => {
            let _ = writeln!(page, "alpaca-py {ALPACA_PY}: not measured: {reason}");
            return Ok(());
        }
    };
    let _ = writeln!(
        page,
        "Both sides decode the same frames in the same run, on one core: the {} frames ({} quotes)\nthat `pricing/decode_*_1000_quotes` above decoded, written to `target/bench-results/quote-frames.json`\nand fed without a network to alpaca-py {} ({})\npinned to one CPU; best of {} repetitions of {} quotes. msgpack is the SDK's live-stream path:\n`msgpack.unpackb` per frame, then its own `DataStream._cast` per message (timestamp conversion,\n`Quote(symbol, msg)`). The SDK's stream only speaks msgpack; its JSON path to the same `Quote`\nobjects is its REST client's, `json.loads` then `Quote(symbol, msg)`, which is what the JSON row\ntimes. Delivery to callbacks is timed on neither side. alpaca-py's JSON and msgpack decodes were\nchecked to give the same quotes, every one of them.\n",
        m.frames, m.quotes_per_pass, m.version, m.runtime, m.repetitions, m.quotes
    );
    page.push_str("| frames | Tranche (Rust) | alpaca-py | ratio (Rust ÷ alpaca-py) |\n|---|---|---|---|\n");
    let rows = [
        ("JSON", "pricing/decode_json_1000_quotes", m.json),
        ("msgpack", "pricing/decode_msgpack_1000_quotes", m.msgpack),
    ];
    for (format, id, python) in rows {
        let (nanos, elements) = criterion_result(target, id)?;
        let rust = elements.ok_or_else(|| format!("{id}: no element throughput in criterion's results"))? * 1e9 / nanos;
        let _ = writeln!(
            page,
            "| {format} | {} quotes/s | {} quotes/s | {:.1}× |",
            human_rate(rust),
            human_rate(python),
            rust / python
        );
    }
    Ok(())
}
