//! Object storage against real servers on 127.0.0.1, started by scripts/test:
//! moto (S3) and Azurite (Azure Blob). Round trips compared with local runs,
//! crash safety, concurrent runs, injected faults, credentials kept secret.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::common::{nightly, table_lines, Cmd, Run, TABLES};

const WHY: &str =
    "run scripts/test, which installs and starts moto_server and azurite-blob on 127.0.0.1";

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {WHY}"))
}

fn bucket() -> String {
    var("CUSTVAL_TEST_S3_BUCKET")
}

fn s3_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT", endpoint.to_string()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

fn az_env() -> Vec<(&'static str, String)> {
    vec![
        ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
        (
            "AZURITE_BLOB_STORAGE_URL",
            var("CUSTVAL_TEST_AZURITE_ENDPOINT"),
        ),
    ]
}

fn s3_store() -> Arc<dyn ObjectStore> {
    Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(var("CUSTVAL_TEST_S3_ENDPOINT"))
            .with_allow_http(true)
            .with_bucket_name(bucket())
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_region("us-east-1")
            .build()
            .unwrap(),
    )
}

fn az_store() -> Arc<dyn ObjectStore> {
    std::env::set_var(
        "AZURITE_BLOB_STORAGE_URL",
        var("CUSTVAL_TEST_AZURITE_ENDPOINT"),
    );
    Arc::new(
        object_store::azure::MicrosoftAzureBuilder::new()
            .with_use_emulator(true)
            .with_container_name(var("CUSTVAL_TEST_AZURE_CONTAINER"))
            .build()
            .unwrap(),
    )
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish() % 1_000_000_000
}

async fn upload(store: &Arc<dyn ObjectStore>, key: &str, local: &Path) {
    let bytes = std::fs::read(local).unwrap();
    store
        .put(
            &object_store::path::Path::from(key),
            PutPayload::from(bytes),
        )
        .await
        .unwrap();
}

fn cdnow() -> String {
    format!("{}/tests/data/cdnow_sample.csv", env!("CARGO_MANIFEST_DIR"))
}

/// Same rows, numbers to 1e-9 relative.
fn assert_same_rows(table: &str, a: &[String], b: &[String]) {
    crate::common::assert_same_rows_within(table, a, b, 1e-9, 1.0);
}

fn local_run() -> (tempfile::TempDir, String) {
    let tmp = tempfile::tempdir().unwrap();
    nightly(tmp.path(), "1997-09-30", cdnow()).ok();
    let base = format!("{}/", tmp.path().display());
    (tmp, base)
}

fn round_trip(env: Vec<(&'static str, String)>, base: String) {
    let input = format!("{base}in/cdnow.csv");
    let output = format!("{base}out/");
    nightly(&output, "1997-09-30", &input).envs(&env).ok();
    let (_keep, local) = local_run();
    for table in TABLES {
        let remote = table_lines(&env, &output, table, "1997-09-30");
        let here = table_lines(&[], &local, table, "1997-09-30");
        assert!(
            remote.len() > 1 || *table == "rejected_rows",
            "{table} is empty"
        );
        assert_same_rows(table, &remote, &here);
    }
    sql_reads_the_store(&env, &input, &output, &local);
}

/// `custval sql` on the store: a published table folder in FROM,
/// read_parquet of a partition, read_csv of the input and --output-dir give
/// the counts the local run's partition gives through `--table`.
fn sql_reads_the_store(env: &[(&'static str, String)], input: &str, output: &str, local: &str) {
    let one = |args: &[&str], sql: &str| -> String {
        let out = Cmd::custval()
            .envs(env)
            .args(["-q", "sql", "--format", "csv"])
            .args(args)
            .arg(sql)
            .stdout();
        out.lines().nth(1).unwrap_or_default().to_string()
    };
    let t = format!("t={local}customer_tiers/as_of=1997-09-30/");
    let want = one(&["--table", &t], "SELECT count(*) FROM t");
    assert!(want.parse::<u64>().unwrap() > 0, "{want}");
    let folder = format!("SELECT count(*) FROM '{output}customer_tiers/'");
    assert_eq!(one(&[], &folder), want);
    let part =
        format!("SELECT count(*) FROM read_parquet('{output}customer_tiers/as_of=1997-09-30/')");
    assert_eq!(one(&[], &part), want);
    assert_eq!(
        one(
            &["--output-dir", output],
            "SELECT count(*) FROM customer_tiers"
        ),
        want
    );
    let lines = std::fs::read_to_string(cdnow()).unwrap().lines().count() - 1;
    let csv = format!("SELECT count(*) FROM read_csv('{input}')");
    assert_eq!(one(&[], &csv), lines.to_string());
}

#[tokio::test]
async fn s3_to_s3_publishes_the_same_rows_as_local_disk() {
    let prefix = unique("roundtrip");
    upload(
        &s3_store(),
        &format!("{prefix}/in/cdnow.csv"),
        Path::new(&cdnow()),
    )
    .await;
    let env = s3_env(&var("CUSTVAL_TEST_S3_ENDPOINT"));
    tokio::task::spawn_blocking(move || round_trip(env, format!("s3://{}/{prefix}/", bucket())))
        .await
        .unwrap();
}

#[tokio::test]
async fn azure_to_azure_publishes_the_same_rows_as_local_disk() {
    let prefix = unique("roundtrip");
    upload(
        &az_store(),
        &format!("{prefix}/in/cdnow.csv"),
        Path::new(&cdnow()),
    )
    .await;
    let env = az_env();
    let container = var("CUSTVAL_TEST_AZURE_CONTAINER");
    tokio::task::spawn_blocking(move || round_trip(env, format!("az://{container}/{prefix}/")))
        .await
        .unwrap();
}

fn run_to(env: &[(&'static str, String)], input: &str, output: &str, extra: &[&str]) -> Run {
    nightly(output, "1997-09-30", input)
        .envs(env)
        .args(extra)
        .run()
}

async fn keys_under(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    use futures::TryStreamExt;
    let p = object_store::path::Path::from(prefix);
    let metas: Vec<_> = store.list(Some(&p)).try_collect().await.unwrap();
    metas.into_iter().map(|m| m.location.to_string()).collect()
}

/// SIGKILL at moments spread over whole runs against S3: the previous
/// partition always reads back whole through its manifest, and a clean
/// re-run publishes the same rows.
#[tokio::test]
async fn sigkill_on_s3_leaves_the_previous_partition_whole() {
    let prefix = unique("crash");
    upload(
        &s3_store(),
        &format!("{prefix}/in/cdnow.csv"),
        Path::new(&cdnow()),
    )
    .await;
    let env = s3_env(&var("CUSTVAL_TEST_S3_ENDPOINT"));
    let base = format!("s3://{}/{prefix}/", bucket());
    let handle = tokio::runtime::Handle::current();
    let key = format!("{prefix}/out");
    tokio::task::spawn_blocking(move || {
        let store = s3_store();
        let mut mixed = 0;
        let input = format!("{base}in/cdnow.csv");
        let output = format!("{base}out/");
        run_to(&env, &input, &output, &[]).assert_code(0);
        let baseline: Vec<Vec<String>> = TABLES
            .iter()
            .map(|t| table_lines(&env, &output, t, "1997-09-30"))
            .collect();
        let t0 = std::time::Instant::now();
        run_to(&env, &input, &output, &[]).assert_code(0);
        let full = t0.elapsed();
        let trials = 20;
        for i in 0..trials {
            let delay = full.mul_f64((i as f64 + 0.5) / trials as f64);
            let mut child = nightly(&output, "1997-09-30", &input)
                .envs(&env)
                .spawn(Stdio::null(), Stdio::null());
            std::thread::sleep(delay);
            let _ = child.kill();
            let _ = child.wait();
            for (t, want) in TABLES.iter().zip(&baseline) {
                let now = table_lines(&env, &output, t, "1997-09-30");
                assert_same_rows(&format!("trial {i} ({delay:?}): {t}"), &now, want);
            }
            // Every table in the run record, whole, from its run.
            let (_, problems) = handle.block_on(published(&store, &key)).unwrap();
            if !problems.is_empty() {
                mixed += 1;
                eprintln!("trial {i}: {problems:?}");
            }
        }
        println!(
            "sigkill trials on S3: {trials}, dates mixing two runs or missing a table: {mixed}"
        );
        assert_eq!(mixed, 0);
        run_to(&env, &input, &output, &[]).assert_code(0);
        for (t, want) in TABLES.iter().zip(&baseline) {
            assert_same_rows(t, &table_lines(&env, &output, t, "1997-09-30"), want);
        }
    })
    .await
    .unwrap();
    // Leftovers of killed runs are gone: every data file is listed by a manifest.
    let store = s3_store();
    for t in TABLES {
        let part = format!("{prefix}/out/{t}/as_of=1997-09-30");
        let keys = keys_under(&store, &part).await;
        let m = store
            .get(&object_store::path::Path::from(format!(
                "{part}/_manifest.json"
            )))
            .await
            .unwrap();
        let m: serde_json::Value = serde_json::from_slice(&m.bytes().await.unwrap()).unwrap();
        let listed = m["files"].as_array().unwrap().len();
        assert_eq!(keys.len(), listed + 1, "{t}: {keys:?}");
    }
}

fn lock_body(host: &str, age_secs: i64) -> String {
    let at = chrono::Utc::now() - chrono::Duration::seconds(age_secs);
    serde_json::json!({"run_id": "other-run", "host": host, "pid": 1, "process_start": null, "refreshed_at": at.to_rfc3339()})
        .to_string()
}

/// A run of the same job and as-of date in progress elsewhere blocks this
/// one (exit 1, nothing published); a stale lock does not; two runs started
/// together leave exactly the rows of one run.
#[tokio::test]
async fn concurrent_runs_of_one_partition_do_not_corrupt_it() {
    let prefix = unique("lock");
    let store = s3_store();
    upload(
        &store,
        &format!("{prefix}/in/cdnow.csv"),
        Path::new(&cdnow()),
    )
    .await;
    let lock_key = object_store::path::Path::from(format!(
        "{prefix}/out/_locks/nightly/as_of=1997-09-30.json"
    ));
    store
        .put(&lock_key, PutPayload::from(lock_body("other-host", 1)))
        .await
        .unwrap();
    let env = s3_env(&var("CUSTVAL_TEST_S3_ENDPOINT"));
    let base = format!("s3://{}/{prefix}/", bucket());
    let (e, b) = (env.clone(), base.clone());
    let out = tokio::task::spawn_blocking(move || {
        run_to(&e, &format!("{b}in/cdnow.csv"), &format!("{b}out/"), &[])
    })
    .await
    .unwrap();
    out.assert_code(1);
    let err = &out.stderr;
    assert!(
        err.contains("another run of job nightly for 1997-09-30 is in progress"),
        "{err}"
    );
    let keys = keys_under(&store, &format!("{prefix}/out")).await;
    assert!(
        keys.iter().all(|k| !k.ends_with("_manifest.json")),
        "published despite the lock: {keys:?}"
    );

    // A lock nobody refreshed for an hour is stale.
    store
        .put(&lock_key, PutPayload::from(lock_body("other-host", 3600)))
        .await
        .unwrap();
    let (e, b) = (env.clone(), base.clone());
    let out = tokio::task::spawn_blocking(move || {
        run_to(&e, &format!("{b}in/cdnow.csv"), &format!("{b}out/"), &[])
    })
    .await
    .unwrap();
    out.assert_code(0);
    let baseline = {
        let (e, b) = (env.clone(), base.clone());
        tokio::task::spawn_blocking(move || {
            table_lines(&e, &format!("{b}out/"), "customer_tiers", "1997-09-30")
        })
        .await
        .unwrap()
    };

    // Two at once.
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let (e, b) = (env.clone(), base.clone());
            std::thread::spawn(move || {
                run_to(&e, &format!("{b}in/cdnow.csv"), &format!("{b}out/"), &[])
            })
        })
        .collect();
    let outs: Vec<Run> = runs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        outs.iter().any(|o| o.status.success()),
        "neither run published"
    );
    for o in outs.iter().filter(|o| !o.status.success()) {
        o.assert_code(1);
        assert!(o.stderr.contains("in progress"), "{}", o.report());
    }
    let (e, b) = (env.clone(), base.clone());
    let now = tokio::task::spawn_blocking(move || {
        table_lines(&e, &format!("{b}out/"), "customer_tiers", "1997-09-30")
    })
    .await
    .unwrap();
    assert_same_rows("customer_tiers", &now, &baseline);
    assert!(
        keys_under(&store, &format!("{prefix}/out/_locks"))
            .await
            .is_empty(),
        "locks released"
    );
}

/// A proxy of the test's own between custval and moto: per connection it
/// answers 503, drops the connection, stalls, or forwards. Returns its port.
async fn fault_proxy(upstream: String, mode: &'static str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = upstream.trim_start_matches("http://").to_string();
    tokio::spawn(async move {
        let mut n: u64 = 0;
        // Bounded: the proxy stops by itself after 5,000 connections.
        while n < 5000 {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            n += 1;
            let fate = match mode {
                "all_fail" => 0,
                _ => n % 4, // 0: 503, 1: drop, 2: stall then forward, 3: forward
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                match fate {
                    0 => {
                        let mut buf = [0u8; 4096];
                        let _ = inbound.read(&mut buf).await;
                        let _ = inbound
                            .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                            .await;
                    }
                    1 => drop(inbound),
                    _ => {
                        if fate == 2 {
                            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                        }
                        if let Ok(mut out) = tokio::net::TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        }
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_are_retried_or_fail_cleanly() {
    let prefix = unique("faults");
    upload(
        &s3_store(),
        &format!("{prefix}/in/cdnow.csv"),
        Path::new(&cdnow()),
    )
    .await;
    let base = format!("s3://{}/{prefix}/", bucket());

    // Some connections fail: retries carry the run through.
    let port = fault_proxy(var("CUSTVAL_TEST_S3_ENDPOINT"), "mixed").await;
    let mut env = s3_env(&format!("http://127.0.0.1:{port}"));
    env.push(("CUSTVAL_STORE_MAX_RETRIES", "10".into()));
    let (e, b) = (env.clone(), base.clone());
    let out = tokio::task::spawn_blocking(move || {
        run_to(&e, &format!("{b}in/cdnow.csv"), &format!("{b}out/"), &[])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "retries should carry the run: {}",
        out.report()
    );
    let direct = s3_env(&var("CUSTVAL_TEST_S3_ENDPOINT"));
    let b = base.clone();
    let (_keep, local) = tokio::task::spawn_blocking(local_run).await.unwrap();
    tokio::task::spawn_blocking(move || {
        for t in TABLES {
            assert_same_rows(
                t,
                &table_lines(&direct, &format!("{b}out/"), t, "1997-09-30"),
                &table_lines(&[], &local, t, "1997-09-30"),
            );
        }
    })
    .await
    .unwrap();

    // Every request fails: exit 1 with a message naming the storage URL, nothing published.
    let port = fault_proxy(var("CUSTVAL_TEST_S3_ENDPOINT"), "all_fail").await;
    let mut env = s3_env(&format!("http://127.0.0.1:{port}"));
    env.push(("CUSTVAL_STORE_MAX_RETRIES", "2".into()));
    env.push(("CUSTVAL_STORE_RETRY_TIMEOUT_SECS", "5".into()));
    let (e, b) = (env.clone(), base.clone());
    let out = tokio::task::spawn_blocking(move || {
        run_to(&e, &format!("{b}in/cdnow.csv"), &format!("{b}out2/"), &[])
    })
    .await
    .unwrap();
    out.assert_code(1);
    let err = &out.stderr;
    assert!(err.contains(base.as_str()) && err.contains("503"), "{err}");
    let keys = keys_under(&s3_store(), &format!("{prefix}/out2")).await;
    assert!(keys.is_empty(), "nothing published: {keys:?}");
}

/// Credentials from the environment never appear in logs, reports,
/// manifests or error messages: the store's, and a cluster secret set in
/// the same environment (the TLS cluster test in `cluster.rs` checks the
/// secret in use on a cluster's logs, outputs and published files).
#[tokio::test]
async fn credentials_never_appear_in_any_output() {
    const KEY_ID: &str = "AKIACUSTVALKEYID7777";
    const SECRET: &str = "custvalSECRETvalue9999";
    const CLUSTER_SECRET: &str = "custvalCLUSTERsecret5555";
    let prefix = unique("secrets");
    upload(
        &s3_store(),
        &format!("{prefix}/in/cdnow.csv"),
        Path::new(&cdnow()),
    )
    .await;
    let mut env = s3_env(&var("CUSTVAL_TEST_S3_ENDPOINT"));
    env.retain(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"));
    env.push(("AWS_ACCESS_KEY_ID", KEY_ID.into()));
    env.push(("AWS_SECRET_ACCESS_KEY", SECRET.into()));
    env.push(("CUSTVAL_CLUSTER_SECRET", CLUSTER_SECRET.into()));
    let tmp = tempfile::tempdir().unwrap();
    let report = tmp.path().join("report.json");
    let bad_report = tmp.path().join("bad.json");
    let base = format!("s3://{}/{prefix}/", bucket());
    let (e, b, r, br) = (
        env.clone(),
        base.clone(),
        report.clone(),
        bad_report.clone(),
    );
    let outs = tokio::task::spawn_blocking(move || {
        let ok = Cmd::custval()
            .envs(&e)
            .args([
                "-vv",
                "--log-format",
                "json",
                "run",
                "jobs/nightly.toml",
                "--as-of",
                "1997-09-30",
                "--input",
                &format!("transactions={b}in/cdnow.csv"),
                "--output",
                &format!("{b}out/"),
                "--report",
                r.to_str().unwrap(),
            ])
            .run();
        let bad = Cmd::custval()
            .envs(&e)
            .args([
                "-vv",
                "run",
                "jobs/nightly.toml",
                "--as-of",
                "1997-09-30",
                "--input",
                "transactions=s3://no-such-bucket-custval/x.csv",
                "--output",
                &format!("{b}out/"),
                "--report",
                br.to_str().unwrap(),
            ])
            .run();
        (ok, bad)
    })
    .await
    .unwrap();
    outs.0.assert_code(0);
    assert_ne!(outs.1.code(), Some(0));
    let mut texts = vec![
        outs.0.stdout.clone(),
        outs.0.stderr.clone(),
        outs.1.stdout.clone(),
        outs.1.stderr.clone(),
        std::fs::read_to_string(&report).unwrap(),
        std::fs::read_to_string(&bad_report).unwrap(),
    ];
    assert!(
        texts[1].contains("step done"),
        "the verbose log was written"
    );
    let store = s3_store();
    for k in keys_under(&store, &prefix)
        .await
        .iter()
        .filter(|k| k.ends_with(".json"))
    {
        let body = store
            .get(&object_store::path::Path::from(k.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        texts.push(String::from_utf8_lossy(&body).to_string());
    }
    assert!(texts.len() > 6 + 6, "manifests were read");
    for t in &texts {
        assert!(
            !t.contains(SECRET) && !t.contains(KEY_ID) && !t.contains(CLUSTER_SECRET),
            "a credential leaked into: {t}"
        );
    }
}

/// What the fault proxy does to the one request it fails.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Answer 503 without forwarding it: the store never sees it.
    Refuse,
    /// Forward it, then close the connection instead of answering: the
    /// store did it, the client does not know.
    LoseAnswer,
}

/// A proxy between custval and a store server that sees every request: it
/// forwards each on a connection of its own (`Connection: close`), counts
/// them, and does `fault` to the `fail_at`-th (from 1; 0 for none).
async fn nth_request_proxy(
    upstream: String,
    fail_at: usize,
    fault: Fault,
) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = upstream.trim_start_matches("http://").to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let (upstream, seen) = (upstream.clone(), seen.clone());
            tokio::spawn(async move {
                // The request head, then its body by Content-Length.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match inbound.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    match inbound.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                if n == fail_at && matches!(fault, Fault::Refuse) {
                    let _ = inbound
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                }
                let mut request: Vec<u8> = head
                    .trim_end()
                    .lines()
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                    .flat_map(|l| format!("{l}\r\n").into_bytes())
                    .collect();
                request.extend_from_slice(b"Connection: close\r\n\r\n");
                request.extend_from_slice(&buf[head_end..]);
                let Ok(mut out) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                if out.write_all(&request).await.is_ok() {
                    if n == fail_at {
                        // Let the store finish, then hang up on the client.
                        let mut answer = Vec::new();
                        let _ = out.read_to_end(&mut answer).await;
                        return;
                    }
                    let _ = tokio::io::copy(&mut out, &mut inbound).await;
                }
                let _ = inbound.shutdown().await;
            });
        }
    });
    (port, count)
}

/// What the store holds for the date: the run record's run id, and for
/// every table whether the record lists it with files that all exist under
/// that run's folder, and the run its manifest names.
async fn published(store: &Arc<dyn ObjectStore>, out: &str) -> Option<(String, Vec<String>)> {
    use object_store::path::Path as P;
    let rec = store
        .get(&P::from(format!(
            "{out}/_runs/nightly/as_of=1997-09-30.json"
        )))
        .await
        .ok()?;
    let rec: serde_json::Value = serde_json::from_slice(&rec.bytes().await.unwrap()).unwrap();
    let run = rec["run_id"].as_str().unwrap().to_string();
    let mut problems = Vec::new();
    for t in TABLES {
        let part = format!("{out}/{t}/as_of=1997-09-30");
        let Some(files) = rec["tables"][t]["files"].as_array() else {
            problems.push(format!("{t}: not in the record"));
            continue;
        };
        for f in files {
            let f = f["path"].as_str().unwrap();
            if !f.starts_with(&format!("run={run}/")) {
                problems.push(format!("{t}: {f} is not run {run}'s"));
            }
            if store.head(&P::from(format!("{part}/{f}"))).await.is_err() {
                problems.push(format!("{t}: {f} is missing"));
            }
        }
        let m = store.get(&P::from(format!("{part}/_manifest.json"))).await;
        if let Ok(m) = m {
            let m: serde_json::Value = serde_json::from_slice(&m.bytes().await.unwrap()).unwrap();
            let (mr, prev) = (m["run_id"].as_str(), rec["previous_run_id"].as_str());
            if mr != Some(run.as_str()) && mr != prev {
                problems.push(format!(
                    "{t}: manifest of run {mr:?}, neither {run} nor the one before"
                ));
            }
        }
    }
    Some((run, problems))
}

/// The fault matrix: for every request index N of a small run against
/// moto, the Nth request is answered 503 and store retries are off, so the
/// run stops there. Runs alternate between two inputs (A: the CDNOW sample,
/// B: its first 4,000 lines) so the data tell which run a table came from.
/// Afterwards: exit 0 or 1; exit 0 only with the run committed; exit 1 only
/// with nothing new visible; every table of the date whole, from the
/// committed run; custval reads the committed run's rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_any_request_leaves_every_table_from_one_run() {
    let prefix = unique("matrix");
    let out = format!("s3://{}/{prefix}/out/", bucket());
    fault_matrix(
        "moto",
        Fault::Refuse,
        s3_store(),
        prefix,
        out,
        var("CUSTVAL_TEST_S3_ENDPOINT"),
        s3_env,
    )
    .await;
}

/// The matrix with the answer lost instead: the store did the Nth request
/// (the conditional put of the run record among them) but custval never
/// hears back; it must find out, not report a failure for a committed run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_at_any_request_leaves_every_table_from_one_run() {
    let prefix = unique("matrix-lost");
    let out = format!("s3://{}/{prefix}/out/", bucket());
    fault_matrix(
        "moto, answers lost",
        Fault::LoseAnswer,
        s3_store(),
        prefix,
        out,
        var("CUSTVAL_TEST_S3_ENDPOINT"),
        s3_env,
    )
    .await;
}

/// The same matrix against Azurite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_at_any_request_on_azure_leaves_every_table_from_one_run() {
    let prefix = unique("matrix");
    let out = format!("az://{}/{prefix}/out/", var("CUSTVAL_TEST_AZURE_CONTAINER"));
    let env = |endpoint: &str| {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR", "true".into()),
            ("AZURITE_BLOB_STORAGE_URL", endpoint.to_string()),
        ]
    };
    let upstream = var("CUSTVAL_TEST_AZURITE_ENDPOINT");
    fault_matrix(
        "azurite",
        Fault::Refuse,
        az_store(),
        prefix,
        out,
        upstream,
        env,
    )
    .await;
}

/// The matrix of one store: `store` reads it directly, `out` is the output
/// URL (under `prefix`), `upstream` the server's endpoint and `env` the
/// environment custval reaches an endpoint with.
async fn fault_matrix(
    name: &str,
    fault: Fault,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    out: String,
    upstream: String,
    env: fn(&str) -> Vec<(&'static str, String)>,
) {
    let tmp = tempfile::tempdir().unwrap();
    let full = std::fs::read_to_string(cdnow()).unwrap();
    let b: String = full.lines().take(4000).map(|l| format!("{l}\n")).collect();
    std::fs::write(tmp.path().join("b.csv"), b).unwrap();
    let inputs = [cdnow(), tmp.path().join("b.csv").display().to_string()];
    // Rows of customer_tiers and retention_cohorts for A and B: from
    // uninterrupted local runs.
    let query = "SELECT count(*) AS n FROM t";
    let counts = |dir: &Path| -> Vec<String> {
        ["customer_tiers", "retention_cohorts"]
            .iter()
            .map(|t| crate::common::read_table(dir, t, "1997-09-30", query)[0]["n"].clone())
            .collect()
    };
    let mut expected = Vec::new();
    for input in &inputs {
        let d = tempfile::tempdir().unwrap();
        nightly(d.path(), "1997-09-30", input).ok();
        expected.push(counts(d.path()));
    }
    assert_ne!(expected[0], expected[1]);
    let key = format!("{prefix}/out");
    let direct = env(&upstream);
    let through = |port: u16| {
        let e: Vec<(&'static str, String)> = env(&format!("http://127.0.0.1:{port}"));
        e
    };
    // A first commit, and the number of requests of a whole run.
    let (port, count) = nth_request_proxy(upstream.clone(), 0, fault).await;
    let (e, o, i) = (through(port), out.clone(), inputs[1].clone());
    tokio::task::spawn_blocking(move || run_to(&e, &i, &o, &[]).assert_code(0))
        .await
        .unwrap();
    let requests = count.load(std::sync::atomic::Ordering::SeqCst);
    let (mut current, mut committed_run) = (1usize, published(&store, &key).await.unwrap().0);
    let (mut mixed, mut ok_missing, mut failed_visible, mut exits) = (0, 0, 0, [0usize; 4]);
    for n in 1..=requests + 2 {
        let next = n % 2;
        let (port, _) = nth_request_proxy(upstream.clone(), n, fault).await;
        let mut e = through(port);
        e.push(("CUSTVAL_STORE_MAX_RETRIES", "0".into()));
        let (o, i) = (out.clone(), inputs[next].clone());
        let run = tokio::task::spawn_blocking(move || run_to(&e, &i, &o, &[]))
            .await
            .unwrap();
        let code = run.code().unwrap_or(-1);
        assert!(code == 0 || code == 1, "request {n}: {}", run.report());
        exits[code as usize] += 1;
        let (run_id, problems) = published(&store, &key).await.unwrap();
        if !problems.is_empty() {
            mixed += 1;
            eprintln!("request {n}: {problems:?}");
        }
        let changed = run_id != committed_run;
        if code == 0 && !changed {
            ok_missing += 1;
            eprintln!("request {n}: exit 0 but the record still names {run_id}");
        }
        if code == 1 && changed {
            failed_visible += 1;
            eprintln!(
                "request {n}: exit 1 but run {run_id} is committed: {}",
                run.stderr
            );
        }
        if changed {
            current = next;
            committed_run = run_id;
        }
        let (d, o) = (direct.clone(), out.clone());
        let now: Vec<String> = tokio::task::spawn_blocking(move || {
            ["customer_tiers", "retention_cohorts"]
                .iter()
                .map(|t| {
                    let text = crate::common::sql_on_table(
                        &d,
                        &format!("{o}{t}/as_of=1997-09-30/"),
                        "csv",
                        query,
                    );
                    text.lines().nth(1).unwrap_or_default().to_string()
                })
                .collect()
        })
        .await
        .unwrap();
        if now != expected[current] {
            mixed += 1;
            eprintln!(
                "request {n}: custval reads {now:?}, the committed run has {:?}",
                expected[current]
            );
        }
    }
    println!(
        "fault matrix on {name}: {} runs ({fault:?} at request 1..={} of a {requests}-request run), exit 0: {}, exit 1: {}; dates mixing two runs: {mixed}, exit 0 with a table missing: {ok_missing}, exit 1 with something new visible: {failed_visible}",
        requests + 2,
        requests + 2,
        exits[0],
        exits[1]
    );
    assert_eq!((mixed, ok_missing, failed_visible), (0, 0, 0));
}

/// Delta Lake output on S3 (moto): written through custval's own S3 store,
/// read back by the `deltalake` Python package; a re-run of the date
/// replaces its partition (same rows, one more commit), as on local disk
/// (tests/integration/delta.rs).
#[test]
fn delta_output_on_s3_reads_back_and_reruns_replace() {
    let endpoint = var("CUSTVAL_TEST_S3_ENDPOINT");
    let env = s3_env(&endpoint);
    let base = format!("s3://{}/{}/", bucket(), unique("delta"));
    let local = tempfile::tempdir().unwrap();
    let input = crate::common::data("cdnow_sample.csv");
    let parquet = local.path().join("parquet");
    nightly(&parquet, "1997-09-30", &input).ok();
    for _ in 0..2 {
        run_to(&env, &input, &base, &["--output-format", "delta"]).assert_code(0);
    }
    let roots: Vec<String> = TABLES.iter().map(|t| format!("{base}{t}")).collect();
    let options = serde_json::json!({
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    });
    let seen = crate::delta::read_back_with(&roots, &local.path().join("dump"), &options);
    for table in TABLES {
        let t = &seen[*table];
        let m = crate::common::read_json(
            &parquet.join(format!("{table}/as_of=1997-09-30/_manifest.json")),
        );
        let want = m["rows"].as_u64().unwrap();
        let rows = t["rows"].get("1997-09-30").map_or(Some(0), |n| n.as_u64());
        assert_eq!(
            rows,
            Some(want),
            "{table}: rows after the re-run, as the Parquet output"
        );
        assert_eq!(
            t["history"].as_array().unwrap().len(),
            2,
            "{table}: one commit per run"
        );
    }
}
