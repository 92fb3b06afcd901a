//! Helpers shared by the end-to-end modules: [`Cmd`], the one way to run the
//! real binary (or another program) and check how it ended; the tables the
//! nightly job publishes and reading them back; row comparison with a
//! numeric tolerance.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// Every table `jobs/nightly.toml` publishes.
pub const TABLES: &[&str] = &[
    "customer_tiers",
    "model_fit",
    "concentration",
    "retention_cohorts",
    "retention_rates",
    "customer_category_share",
    "rejected_rows",
    "tier_transitions",
    "retention_scenarios",
];

/// A command to run: the `custval` binary ([`Cmd::custval`]) or any other
/// program ([`Cmd::new`]), built like [`Command`]: arguments, environment,
/// working directory, stdin and a timeout. It runs with [`Cmd::run`] (any
/// exit), [`Cmd::ok`] (exit 0), [`Cmd::code`] (that exit code) or
/// [`Cmd::fails`] (any failure); an unexpected end panics with the command,
/// its exit status, stderr and the end of stdout. [`Cmd::spawn`] starts it
/// in the background.
#[derive(Debug)]
pub struct Cmd {
    cmd: Command,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
}

impl Cmd {
    /// The `custval` binary under test, run from the crate root (job files
    /// and `sql/` resolve as in the repository), with no `RUST_LOG`,
    /// `CUSTVAL_ENGINE`, cluster secret or TLS file inherited from the
    /// test's environment.
    pub fn custval() -> Cmd {
        let mut c = Cmd::new(env!("CARGO_BIN_EXE_custval"));
        c.current_dir(env!("CARGO_MANIFEST_DIR"));
        for var in [
            "RUST_LOG",
            "CUSTVAL_ENGINE",
            "CUSTVAL_CLUSTER_SECRET",
            "CUSTVAL_CLUSTER_SECRET_FILE",
            "CUSTVAL_TLS_CERT",
            "CUSTVAL_TLS_KEY",
            "CUSTVAL_TLS_CA",
        ] {
            c.env_remove(var);
        }
        c
    }

    /// Any program, in the test's working directory and environment.
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            cmd: Command::new(program),
            stdin: None,
            timeout: None,
        }
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Cmd {
        self.cmd.arg(arg);
        self
    }

    pub fn args<S: AsRef<OsStr>>(&mut self, args: impl IntoIterator<Item = S>) -> &mut Cmd {
        self.cmd.args(args);
        self
    }

    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Cmd {
        self.cmd.env(key, value);
        self
    }

    /// Environment variables as the storage tests keep them.
    pub fn envs(&mut self, vars: &[(&'static str, String)]) -> &mut Cmd {
        self.cmd.envs(vars.iter().map(|(k, v)| (k, v)));
        self
    }

    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Cmd {
        self.cmd.env_remove(key);
        self
    }

    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Cmd {
        self.cmd.current_dir(dir);
        self
    }

    /// Bytes to write to the command's stdin (otherwise stdin is empty).
    pub fn stdin(&mut self, input: impl Into<Vec<u8>>) -> &mut Cmd {
        self.stdin = Some(input.into());
        self
    }

    /// Kill the command and fail the test if it runs longer than this
    /// (otherwise it may run as long as it takes).
    pub fn timeout(&mut self, limit: Duration) -> &mut Cmd {
        self.timeout = Some(limit);
        self
    }

    /// Run to the end, whatever the exit status.
    pub fn run(&mut self) -> Run {
        let command = format!("{:?}", self.cmd);
        let stdin = if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        let mut child = self
            .cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        if let (Some(bytes), Some(mut pipe)) = (self.stdin.clone(), child.stdin.take()) {
            // A command that exits without reading its input closes the pipe.
            std::thread::spawn(move || pipe.write_all(&bytes));
        }
        let stdout = read_to_end(child.stdout.take());
        let stderr = read_to_end(child.stderr.take());
        let (status, timed_out) = wait(&mut child, self.timeout);
        let run = Run {
            command,
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        };
        if let Some(limit) = timed_out {
            panic!("killed after {limit:?}:\n{}", run.report());
        }
        run
    }

    /// Run and expect exit 0.
    pub fn ok(&mut self) -> Run {
        self.code(0)
    }

    /// Run and expect this exit code.
    pub fn code(&mut self, code: i32) -> Run {
        let run = self.run();
        run.assert_code(code);
        run
    }

    /// Run and expect it to fail, with any exit code or signal.
    pub fn fails(&mut self) -> Run {
        let run = self.run();
        assert!(
            !run.status.success(),
            "expected a failure:\n{}",
            run.report()
        );
        run
    }

    /// Run, expect exit 0 and return stdout.
    pub fn stdout(&mut self) -> String {
        self.ok().stdout
    }

    /// Start in the background with these stdout and stderr. Its stdin is
    /// a pipe, left open in the child's `stdin` after the bytes of
    /// [`Cmd::stdin`] (if any) for the caller to write or drop.
    pub fn spawn(&mut self, stdout: Stdio, stderr: Stdio) -> Child {
        let command = format!("{:?}", self.cmd);
        let mut child = self
            .cmd
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command}: {e}"));
        if let (Some(bytes), Some(pipe)) = (&self.stdin, child.stdin.as_mut()) {
            pipe.write_all(bytes)
                .unwrap_or_else(|e| panic!("writing stdin of {command}: {e}"));
        }
        child
    }
}

/// Everything a pipe yields, read on a thread of its own (so that neither
/// stdout nor stderr can fill up and stall the command).
fn read_to_end(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Wait for the child; with a limit, kill it when the limit passes and
/// return the limit as the second value.
fn wait(child: &mut Child, limit: Option<Duration>) -> (ExitStatus, Option<Duration>) {
    let Some(limit) = limit else {
        return (child.wait().unwrap(), None);
    };
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, None);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            return (child.wait().unwrap(), Some(limit));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How a command ended: its exit status and what it wrote (as text).
#[derive(Debug)]
pub struct Run {
    /// The command line, working directory and environment changes.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The exit code; None when a signal ended the command.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panic with [`Run::report`] unless the command exited with `code`.
    pub fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit {code}:\n{}",
            self.report()
        );
    }

    /// The command, its exit status, stderr and the last lines of stdout.
    pub fn report(&self) -> String {
        let lines: Vec<&str> = self.stdout.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!(
            "command: {}\nstatus: {}\n--- stderr ---\n{}\n--- stdout (last 40 lines) ---\n{tail}",
            self.command, self.status, self.stderr
        )
    }
}

impl From<Run> for Output {
    fn from(r: Run) -> Output {
        Output {
            status: r.status,
            stdout: r.stdout.into_bytes(),
            stderr: r.stderr.into_bytes(),
        }
    }
}

/// Run the real binary with extra environment variables, whatever its exit
/// status: the older form of `Cmd::custval().envs(env).args(args).run()`,
/// kept for modules written against it.
#[allow(dead_code)]
pub fn custval(env: &[(&'static str, String)], args: &[&str]) -> Output {
    Cmd::custval().envs(env).args(args).run().into()
}

/// A file of the test data, `tests/data/<name>`.
pub fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `custval sql --format <format> --table t=<url> <query>`, expected to
/// succeed; its stdout.
pub fn sql_on_table(env: &[(&'static str, String)], url: &str, format: &str, sql: &str) -> String {
    Cmd::custval()
        .envs(env)
        .args(["sql", "--format", format, "--table"])
        .arg(format!("t={url}"))
        .arg(sql)
        .stdout()
}

/// All rows of a published table as sorted CSV lines.
pub fn table_lines(
    env: &[(&'static str, String)],
    base: &str,
    table: &str,
    as_of: &str,
) -> Vec<String> {
    let url = format!("{base}{table}/as_of={as_of}/");
    let mut lines: Vec<String> = sql_on_table(env, &url, "csv", "SELECT * FROM t")
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

/// The folder of a published partition under a local output folder.
fn partition_url(dir: &Path, table: &str, as_of: &str) -> String {
    format!("{}/{table}/as_of={as_of}/", dir.display())
}

/// Rows of a published partition as CSV records keyed by column name.
pub fn read_table(dir: &Path, table: &str, as_of: &str, sql: &str) -> Vec<HashMap<String, String>> {
    let text = sql_on_table(&[], &partition_url(dir, table, as_of), "csv", sql);
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(String::from)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(String::from))
                .collect()
        })
        .collect()
}

/// Rows of a published partition as JSON objects.
pub fn json_rows(dir: &Path, table: &str, as_of: &str, sql: &str) -> Vec<serde_json::Value> {
    sql_on_table(&[], &partition_url(dir, table, as_of), "ndjson", sql)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A JSON file, parsed.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON number within 1e-12 of `want`, or JSON null for None.
pub fn close(v: &serde_json::Value, want: Option<f64>) -> bool {
    match (v.as_f64(), want) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-12,
        (None, None) => v.is_null(),
        _ => false,
    }
}

/// Every file below `dir` (none when it does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// `custval run <job> --as-of <as_of> --output <out> --input <input>`
/// (`input` as NAME=URL); more arguments may be added.
pub fn run_job(job: impl AsRef<OsStr>, out: impl AsRef<OsStr>, as_of: &str, input: &str) -> Cmd {
    let mut c = Cmd::custval();
    c.arg("run")
        .arg(job)
        .args(["--as-of", as_of, "--output"])
        .arg(out)
        .args(["--input", input]);
    c
}

/// The nightly job on a transactions file or folder.
pub fn nightly(out: impl AsRef<OsStr>, as_of: &str, transactions: impl std::fmt::Display) -> Cmd {
    run_job(
        "jobs/nightly.toml",
        out,
        as_of,
        &format!("transactions={transactions}"),
    )
}

/// `custval -q run jobs/nightly.toml` on `transactions` into `out`, with
/// `extra` arguments; its output, whatever the exit code.
pub fn run_nightly(transactions: &str, as_of: &str, out: &Path, extra: &[&str]) -> Output {
    let input = format!("transactions={transactions}");
    let out = out.display().to_string();
    let mut args = vec![
        "-q",
        "run",
        "jobs/nightly.toml",
        "--input",
        &input,
        "--as-of",
        as_of,
        "--output",
        &out,
    ];
    args.extend_from_slice(extra);
    custval(&[], &args)
}

/// The nightly job on the CDNOW sample.
pub fn nightly_cdnow(out: impl AsRef<OsStr>, as_of: &str) -> Cmd {
    nightly(out, as_of, data("cdnow_sample.csv"))
}

/// Every file a partition's manifest lists exists; `what` names the case.
pub fn assert_manifest_files_exist(part: &Path, what: &str) {
    let m = read_json(&part.join("_manifest.json"));
    for f in m["files"].as_array().unwrap() {
        assert!(
            part.join(f["path"].as_str().unwrap()).exists(),
            "{what}: the manifest names a missing file {f}"
        );
    }
}

/// Same rows: text equal, numbers within `rel` relative to the larger
/// magnitude, or to `floor` when both are smaller (parallel or distributed
/// sums may add in another order). `a` and `b` are sorted CSV lines.
pub fn assert_same_rows_within(table: &str, a: &[String], b: &[String], rel: f64, floor: f64) {
    assert_eq!(a.len(), b.len(), "{table}: row counts differ");
    for (x, y) in a.iter().zip(b) {
        let (xs, ys): (Vec<&str>, Vec<&str>) = (x.split(',').collect(), y.split(',').collect());
        assert_eq!(xs.len(), ys.len(), "{table}: {x} vs {y}");
        for (u, v) in xs.iter().zip(&ys) {
            match (u.parse::<f64>(), v.parse::<f64>()) {
                (Ok(p), Ok(q)) => assert!(
                    (p - q).abs() <= rel * p.abs().max(q.abs()).max(floor),
                    "{table}: {x} vs {y}"
                ),
                _ => assert_eq!(u, v, "{table}: {x} vs {y}"),
            }
        }
    }
}
