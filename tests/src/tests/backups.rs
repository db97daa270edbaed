//! Backups end to end (SPEC §9): jobs over the API, files read by a real agent and sent over its
//! own QUIC connection, chunked, deduplicated and stored; the machine's real PostgreSQL and Redis
//! through `pg_dump` and `redis-cli`; restores staged, switched and verified on the host; a
//! damaged chunk found by `check` and refused by a restore that leaves the target alone; the
//! outcome in the store's series and the daily report.

use std::{os::unix::fs::PermissionsExt as _, path::Path, process::Command, time::Duration};

use serde_json::{Value, json};

use super::{connected, tempdir};
use crate::{
    http::Api,
    process::{Agent, ControlPlane},
    wait,
};

/// Waits for run `id` to finish; returns its record.
async fn finished(api: &Api, id: &Value) -> Value {
    wait::until(
        Duration::from_secs(60),
        &format!("backup run {id} finished"),
        || async {
            let (status, body) = api.get("/ops/backups/status").await.ok()?;
            assert_eq!(status, 200, "{body}");
            body["recent_runs"]
                .as_array()?
                .iter()
                .find(|r| &r["id"] == id && r["state"] != "running")
                .cloned()
        },
    )
    .await
}

/// Starts the job now and waits for its one run.
async fn run_job(api: &Api, job: &str) -> Value {
    let (status, body) = api
        .post("/ops/backups/manual", &json!({"job": job}))
        .await
        .expect("post");
    assert_eq!(status, 202, "{body}");
    let runs = body["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1, "{body}");
    assert_eq!(runs[0]["state"], "running");
    finished(api, &runs[0]["id"]).await
}

async fn restore(api: &Api, snapshot: &Value, target: &Path) -> Value {
    let (status, body) = api
        .post(
            "/ops/backups/restore",
            &json!({"snapshot": snapshot, "target": target}),
        )
        .await
        .expect("post");
    assert_eq!(status, 202, "{body}");
    finished(api, &body["run"]["id"]).await
}

fn succeeded(run: &Value) {
    assert_eq!(run["state"], "succeeded", "{run}");
}

fn noise(len: usize, mut x: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn psql(sql: &str) {
    let status = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-q",
            "-c",
            sql,
        ])
        .status()
        .expect("psql runs (PostgreSQL on 127.0.0.1:5432, see ../shared/services.md)");
    assert!(status.success(), "psql {sql}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_databases_and_caches_are_backed_up_deduplicated_restored_and_checked() {
    let dir = tempdir();
    let cp = ControlPlane::serve(&dir.path().join("cp"));
    let api = cp.api();
    let _agent = Agent::start(&cp.issue_agent("node-1", &dir.path().join("agent"), "1s", "64MiB"));
    connected(&api, "node-1").await;

    // What the host holds: config, a large file, a link, and a cache to exclude.
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("etc/app")).expect("mkdir");
    std::fs::create_dir_all(src.join("cache")).expect("mkdir");
    std::fs::write(src.join("etc/app/app.conf"), b"model = \"llama\"\n").expect("write");
    std::fs::set_permissions(
        src.join("etc/app/app.conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .expect("chmod");
    let blob = noise(6 << 20, 99);
    std::fs::write(src.join("etc/app/weights.bin"), &blob).expect("write");
    std::os::unix::fs::symlink("app.conf", src.join("etc/app/current.conf")).expect("link");
    std::fs::write(src.join("cache/scratch.tmp"), b"junk").expect("write");

    // Jobs: bad ones name their field; a good one is created, then replaced.
    let files_job = json!({
        "name": "files", "agents": ["node-1"],
        "source": {"type": "paths", "paths": [src], "excludes": ["**/cache"]},
        "retention": {"keep_last": 5}
    });
    for (bad, field) in [
        (
            json!({"name": "x", "agents": ["node-1"], "source": {"type": "paths", "paths": ["relative"]}}),
            "source.paths",
        ),
        (
            json!({"name": "x", "agents": ["node-1"], "schedule": "daily", "source": {"type": "redis", "url": "redis://127.0.0.1"}}),
            "schedule",
        ),
        (
            json!({"name": "x", "agents": ["node-1"], "source": {"type": "nfs"}}),
            "source",
        ),
    ] {
        let (status, body) = api.post("/ops/backups/jobs", &bad).await.expect("post");
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(field),
            "{field}: {body}"
        );
    }
    let (status, body) = api
        .post("/ops/backups/jobs", &files_job)
        .await
        .expect("post");
    assert_eq!((status, &body["created"]), (201, &json!(true)), "{body}");
    let (status, body) = api
        .post("/ops/backups/jobs", &files_job)
        .await
        .expect("post");
    assert_eq!((status, &body["created"]), (200, &json!(false)), "{body}");
    let (status, body) = api
        .post("/ops/backups/manual", &json!({"job": "nope"}))
        .await
        .expect("post");
    assert_eq!(status, 404, "{body}");
    let (status, body) = api
        .post(
            "/ops/backups/manual",
            &json!({"job": "files", "agents": ["ghost"]}),
        )
        .await
        .expect("post");
    assert_eq!(status, 404, "{body}");

    // First snapshot: everything but the cache; the second adds nothing to the repository.
    let first = run_job(&api, "files").await;
    succeeded(&first);
    assert_eq!(first["trigger"], "manual");
    assert!(
        first["bytes"].as_u64().expect("bytes") >= blob.len() as u64,
        "{first}"
    );
    assert!(first["added_bytes"].as_u64().expect("added") > 0, "{first}");
    let second = run_job(&api, "files").await;
    succeeded(&second);
    assert_eq!(second["bytes"], first["bytes"]);
    assert_eq!(
        second["added_bytes"], 0,
        "unchanged data is stored once: {second}"
    );

    let (status, list) = api
        .get("/ops/backups/snapshots?job=files")
        .await
        .expect("get");
    assert_eq!(status, 200, "{list}");
    let snapshots = list["snapshots"].as_array().expect("snapshots");
    assert_eq!(snapshots.len(), 2, "{list}");
    assert_eq!(snapshots[0]["id"], second["snapshot"], "newest first");
    assert_eq!(snapshots[0]["agent"], "node-1");

    // Restore into a new directory: the same bytes, mode and link; the cache was excluded.
    let restored = dir.path().join("restored/files");
    let run = restore(&api, &second["snapshot"], &restored).await;
    succeeded(&run);
    assert!(
        run["detail"].as_str().unwrap_or("").contains("verified"),
        "{run}"
    );
    let inside = restored.join(src.strip_prefix("/").expect("absolute"));
    assert_eq!(
        std::fs::read(inside.join("etc/app/weights.bin")).expect("weights"),
        blob
    );
    assert_eq!(
        std::fs::read(inside.join("etc/app/app.conf")).expect("conf"),
        b"model = \"llama\"\n"
    );
    let mode = std::fs::metadata(inside.join("etc/app/app.conf"))
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    assert_eq!(
        std::fs::read_link(inside.join("etc/app/current.conf")).expect("link"),
        Path::new("app.conf")
    );
    assert!(!inside.join("cache").exists(), "excluded");

    // Over an existing directory: switched whole, so what was there is gone.
    std::fs::write(restored.join("stale.txt"), b"old").expect("write");
    succeeded(&restore(&api, &first["snapshot"], &restored).await);
    assert!(!restored.join("stale.txt").exists());
    assert_eq!(
        std::fs::read(inside.join("etc/app/weights.bin")).expect("weights"),
        blob
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("restored"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no staging directories left: {leftovers:?}"
    );

    // PostgreSQL through pg_dump, Redis through redis-cli, both real.
    psql(
        "DROP TABLE IF EXISTS backup_probe; CREATE TABLE backup_probe (id int); INSERT INTO backup_probe VALUES (42);",
    );
    let (status, body) = api
        .post(
            "/ops/backups/jobs",
            &json!({"name": "pg", "class": "data", "agents": ["node-1"],
                    "source": {"type": "postgres", "url": "postgresql://postgres@127.0.0.1:5432/test"}}),
        )
        .await
        .expect("post");
    assert_eq!(status, 201, "{body}");
    let pg = run_job(&api, "pg").await;
    succeeded(&pg);
    let pg_out = dir.path().join("pg-restore");
    succeeded(&restore(&api, &pg["snapshot"], &pg_out).await);
    let listing = Command::new("pg_restore")
        .arg("--list")
        .arg(pg_out.join("postgres.dump"))
        .output()
        .expect("pg_restore");
    assert!(listing.status.success());
    assert!(
        String::from_utf8_lossy(&listing.stdout).contains("backup_probe"),
        "the dump holds the table"
    );

    let (status, body) = api
        .post(
            "/ops/backups/jobs",
            &json!({"name": "cache", "agents": ["node-1"], "source": {"type": "redis", "url": "redis://127.0.0.1:6379"}}),
        )
        .await
        .expect("post");
    assert_eq!(status, 201, "{body}");
    let redis = run_job(&api, "cache").await;
    succeeded(&redis);
    let redis_out = dir.path().join("redis-restore");
    succeeded(&restore(&api, &redis["snapshot"], &redis_out).await);
    let rdb = std::fs::read(redis_out.join("redis.rdb")).expect("rdb");
    assert!(rdb.starts_with(b"REDIS"), "an RDB file");

    // A failing command: the run fails with the command's own words.
    let (status, body) = api
        .post(
            "/ops/backups/jobs",
            &json!({"name": "broken", "agents": ["node-1"],
                    "source": {"type": "command", "command": ["sh", "-c", "echo partial; echo disk on fire >&2; exit 3"]}}),
        )
        .await
        .expect("post");
    assert_eq!(status, 201, "{body}");
    let broken = run_job(&api, "broken").await;
    assert_eq!(broken["state"], "failed", "{broken}");
    assert!(
        broken["detail"]
            .as_str()
            .unwrap_or("")
            .contains("disk on fire"),
        "{broken}"
    );

    // Status: per job last run, success rate, next run (the data class runs daily at 04:00).
    let (_, status_body) = api.get("/ops/backups/status").await.expect("status");
    let job = |name: &str| {
        status_body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .find(|j| j["spec"]["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(job("files")["success_rate"], 1.0);
    assert_eq!(job("files")["snapshots"], 2);
    assert_eq!(job("broken")["success_rate"], 0.0);
    assert_eq!(job("pg")["schedule"], "0 4 * * *");
    assert!(
        job("pg")["next_run"]
            .as_str()
            .unwrap_or("")
            .contains("T04:00:00"),
        "{}",
        job("pg")
    );
    assert!(
        status_body["repository"]["stored_bytes"]
            .as_u64()
            .expect("bytes")
            > 0
    );

    // The fleet summary and the health view name the failing job.
    let (_, fleet) = api.get("/ops/status").await.expect("status");
    assert_eq!(
        fleet["backups"]["failing"],
        json!(["broken on node-1"]),
        "{}",
        fleet["backups"]
    );
    assert_eq!(fleet["backups"]["jobs"], 4);
    let (_, health) = api.get("/ops/health/comprehensive").await.expect("health");
    let scheduler = &health["components"]["scheduler"];
    assert_eq!(scheduler["status"], "degraded", "{scheduler}");
    assert!(
        scheduler["reason"]
            .as_str()
            .unwrap_or("")
            .contains("broken on node-1"),
        "{scheduler}"
    );

    // The outcome as series: alert rules and reports read these.
    for (job, want) in [("files", 1.0), ("broken", 0.0)] {
        let query = format!("aisemble_backup_last_run_success{{job=\"{job}\",host=\"node-1\"}}");
        let value = wait::until(Duration::from_secs(20), &query, || async {
            let (_, body) = api
                .get(&format!(
                    "/api/v1/query?query={}",
                    crate::http::urlencode(&query)
                ))
                .await
                .ok()?;
            body["data"]["result"][0]["value"][1]
                .as_str()?
                .parse::<f64>()
                .ok()
        })
        .await;
        assert_eq!(value, want, "{query}");
    }
    let (_, report) = api.get("/ops/reports/daily").await.expect("report");
    assert_eq!(
        report["backups"]["available"], true,
        "{}",
        report["backups"]
    );
    let failed: Vec<&Value> = report["backups"]["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["last_run_success"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{}", report["backups"]);
    assert_eq!(failed[0]["job"], "broken");

    // A clean check, then a damaged chunk: check names it, and a restore that needs it fails
    // before touching its target.
    let (status, body) = api
        .post("/ops/backups/check", &json!({}))
        .await
        .expect("post");
    assert_eq!(status, 202, "{body}");
    let check = finished(&api, &body["run"]["id"]).await;
    succeeded(&check);
    assert!(
        check["detail"].as_str().unwrap_or("").contains("no errors"),
        "{check}"
    );

    let manifest: Value = serde_json::from_slice(
        &std::fs::read(
            cp.data_dir
                .join("backups/snapshots")
                .join(format!("{}.json", second["snapshot"].as_str().expect("id"))),
        )
        .expect("manifest"),
    )
    .expect("json");
    let weights = manifest["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["path"].as_str().unwrap_or("").ends_with("weights.bin"))
        .expect("weights in the manifest");
    let chunk = weights["chunks"][0].as_str().expect("chunk id");
    let chunk_path = cp
        .data_dir
        .join("backups/data")
        .join(&chunk[..2])
        .join(chunk);
    let mut bytes = std::fs::read(&chunk_path).expect("chunk");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&chunk_path, bytes).expect("damage");

    let (_, body) = api
        .post("/ops/backups/check", &json!({"read_data": true}))
        .await
        .expect("post");
    let check = finished(&api, &body["run"]["id"]).await;
    assert_eq!(check["state"], "failed", "{check}");
    assert!(
        check["detail"].as_str().unwrap_or("").contains(chunk),
        "{check}"
    );

    let untouched = dir.path().join("untouched");
    std::fs::create_dir_all(&untouched).expect("mkdir");
    std::fs::write(untouched.join("keep.txt"), b"mine").expect("write");
    let run = restore(&api, &second["snapshot"], &untouched).await;
    assert_eq!(run["state"], "failed", "{run}");
    assert!(
        run["detail"]
            .as_str()
            .unwrap_or("")
            .contains("integrity check failed"),
        "{run}"
    );
    assert_eq!(
        std::fs::read(untouched.join("keep.txt")).expect("kept"),
        b"mine"
    );
    assert_eq!(std::fs::read_dir(&untouched).expect("ls").count(), 1);

    // Runs survive a restart of the control plane.
    let mut cp = cp;
    cp.restart();
    let api = cp.api();
    let (_, status_body) = api.get("/ops/backups/status").await.expect("status");
    assert!(
        status_body["recent_runs"].as_array().expect("runs").len() >= 10,
        "{status_body}"
    );
    assert_eq!(status_body["jobs"].as_array().expect("jobs").len(), 4);
}

/// A file that fails mid-read (`/proc/self/mem` answers EIO, as a failing disk does) is left out
/// of the snapshot, counted and named in the run, and the rest is backed up and restores; the
/// job is then deleted, and its snapshot stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_fails_mid_read_is_left_out_and_reported() {
    let dir = tempdir();
    let cp = ControlPlane::serve(&dir.path().join("cp"));
    let api = cp.api();
    let _agent = Agent::start(&cp.issue_agent("node-1", &dir.path().join("agent"), "1s", "64MiB"));
    connected(&api, "node-1").await;
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).expect("mkdir");
    std::fs::write(src.join("ok.conf"), b"kept\n").expect("write");
    let job = json!({
        "name": "partial", "agents": ["node-1"],
        "source": {"type": "paths", "paths": [src, "/proc/self/mem"]}
    });
    let (status, body) = api.post("/ops/backups/jobs", &job).await.expect("post");
    assert_eq!(status, 201, "{body}");

    let run = run_job(&api, "partial").await;
    succeeded(&run);
    let detail = run["detail"].as_str().unwrap_or("");
    assert!(detail.contains("1 entry could not be read"), "{run}");
    assert_eq!(run["skipped"], 1, "{run}");
    let skipped = wait::until(
        Duration::from_secs(10),
        "the skipped-entries series",
        || async {
            let (_, body) = api
                .get("/api/v1/query?query=aisemble_backup_last_skipped_entries%7Bjob%3D%22partial%22%7D")
                .await
                .ok()?;
            body["data"]["result"][0]["value"][1].as_str().map(str::to_owned)
        },
    )
    .await;
    assert_eq!(skipped, "1");
    let (_, list) = api
        .get("/ops/backups/snapshots?job=partial")
        .await
        .expect("get");
    let snapshot = &list["snapshots"][0];
    assert_eq!(snapshot["id"], run["snapshot"], "{list}");
    assert_eq!(snapshot["skipped"], 1, "{snapshot}");
    assert_eq!(
        snapshot["entries"], 2,
        "the directory and ok.conf: {snapshot}"
    );

    let restored = dir.path().join("restored");
    succeeded(&restore(&api, &run["snapshot"], &restored).await);
    let inside = restored.join(src.strip_prefix("/").expect("absolute"));
    assert_eq!(
        std::fs::read(inside.join("ok.conf")).expect("ok.conf"),
        b"kept\n"
    );
    assert!(
        !restored.join("proc").exists(),
        "no part of the unreadable file"
    );

    // Deleting the job stops it being listed or run; its snapshot stays.
    let (status, body) = api
        .delete("/ops/backups/jobs/partial")
        .await
        .expect("delete");
    assert_eq!((status, &body["name"]), (200, &json!("partial")), "{body}");
    let (_, status_body) = api.get("/ops/backups/status").await.expect("status");
    assert!(
        status_body["jobs"]
            .as_array()
            .is_some_and(|jobs| jobs.iter().all(|j| j["spec"]["name"] != "partial")),
        "{status_body}"
    );
    let (status, body) = api
        .post("/ops/backups/manual", &json!({"job": "partial"}))
        .await
        .expect("post");
    assert_eq!(status, 404, "{body}");
    let (status, _) = api
        .delete("/ops/backups/jobs/partial")
        .await
        .expect("delete");
    assert_eq!(status, 404);
    let (_, list) = api
        .get("/ops/backups/snapshots?job=partial")
        .await
        .expect("get");
    assert_eq!(list["snapshots"][0]["id"], run["snapshot"], "{list}");
}
