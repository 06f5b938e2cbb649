//! Crash scenarios: the `newt` process is killed with SIGKILL at chosen
//! and at random points; after a restart nothing is lost (DEV-08, TD-04,
//! ENC-04, EXP-04).

use crate::{newt, server};
use newt_testkit::{Action, Proxy, Rule};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn(dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_newt"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

use crate::{login_json as login, run_json as run};

/// Kills `child` after `delay` unless it finished; returns whether it was
/// killed while running.
fn kill_after(mut child: Child, delay: Duration) -> bool {
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

/// Kill runs per scenario: 25 by default, `NEWT_CRASH_RUNS` in the long
/// mode.
fn runs() -> usize {
    std::env::var("NEWT_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25)
}

fn random_ms(max: u64) -> Duration {
    Duration::from_millis(rand::random::<u64>() % max)
}

/// (a) DEV-08: killed after `/keys/upload` reached the server and before
/// the response was read; the next run re-uploads the identical keys.
#[test]
fn killed_after_upload_reached_the_server() {
    let alice = server().register("alice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(server().port()).unwrap();
    proxy.add_rule(Rule::new("/keys/upload", 1, Action::HoldResponse));
    let mut child = Command::new(env!("CARGO_BIN_EXE_newt"))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "login",
            "--homeserver",
            &proxy.url(),
            "--user",
            &alice.localpart,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", alice.password).as_bytes())
        .unwrap();
    assert!(
        proxy.wait_for(Duration::from_secs(30), |r| r.path.contains("/keys/upload")
            && r.upstream_status == Some(200))
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The restarted client finishes the upload: identical body, 200.
    let rooms = newt(dir.path(), &["rooms"], None);
    assert!(
        rooms.status.success(),
        "{}",
        String::from_utf8_lossy(&rooms.stderr)
    );
    let uploads: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|r| r.path.contains("/keys/upload"))
        .collect();
    assert!(uploads.len() >= 2);
    assert_eq!(uploads[1].body, uploads[0].body, "the re-upload differs");
    assert_eq!(
        uploads[1].upstream_status,
        Some(200),
        "the server refused the re-upload"
    );
}

/// (b) TD-04: the receiver is killed at random points while syncs carry
/// new room keys; every message still decrypts afterwards.
#[test]
fn receiver_killed_at_random_points_loses_no_key() {
    let (alice, bob) = (
        server().register("alice").unwrap(),
        server().register("bob").unwrap(),
    );
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = server().url();
    login(da.path(), &url, &alice);
    login(db.path(), &url, &bob);
    let room = run(
        da.path(),
        &[
            "create-room",
            "--invite",
            &bob.user_id,
            "--rotation-period-msgs",
            "1",
        ],
        None,
    )[0]["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    run(db.path(), &["join", &room], None);
    let mut sent = Vec::new();
    let mut killed = 0;
    for i in 0..runs() {
        let body = format!("key {i}");
        let event = run(da.path(), &["send", &room, &body], None).remove(0);
        sent.push(event["event_id"].as_str().unwrap().to_owned());
        killed += kill_after(
            spawn(db.path(), &["listen", "--timeout", "5"]),
            random_ms(600),
        ) as usize;
    }
    assert!(killed > 5, "too few runs were killed mid-way ({killed})");
    let history = run(db.path(), &["history", &room, "--limit", "100"], None);
    for event_id in &sent {
        let m = history
            .iter()
            .find(|m| m["event_id"] == event_id.as_str())
            .expect("event missing from history");
        assert_eq!(m["decrypted"], true, "lost the key of {event_id}: {m}");
    }
}

/// (c) ENC-04: the sender is killed at random points while sharing a key
/// with a room of many devices; every room event that went out decrypts.
#[test]
fn sender_killed_while_sharing_keys() {
    let (alice, bob) = (
        server().register("alice").unwrap(),
        server().register("bob").unwrap(),
    );
    let url = server().url();
    let da = tempfile::tempdir().unwrap();
    login(da.path(), &url, &alice);
    let bobs: Vec<_> = (0..8).map(|_| tempfile::tempdir().unwrap()).collect();
    for dir in &bobs {
        login(dir.path(), &url, &bob);
    }
    let room = run(
        da.path(),
        &[
            "create-room",
            "--invite",
            &bob.user_id,
            "--rotation-period-msgs",
            "2",
        ],
        None,
    )[0]["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    run(bobs[0].path(), &["join", &room], None);
    // Kill points are drawn over the time a whole send takes.
    let started = Instant::now();
    run(da.path(), &["send", &room, "warm-up"], None);
    let span = (started.elapsed().as_millis() as u64).max(20);
    let mut killed = 0;
    for i in 0..runs() {
        killed += kill_after(
            spawn(da.path(), &["send", &room, &format!("share {i}")]),
            random_ms(span),
        ) as usize;
    }
    assert!(killed > 5, "too few runs were killed mid-way ({killed})");
    run(da.path(), &["send", &room, "after the crashes"], None);
    for dir in [&bobs[0], &bobs[7]] {
        let history = run(dir.path(), &["history", &room, "--limit", "100"], None);
        let encrypted: Vec<&Value> = history.iter().filter(|m| m["encrypted"] == true).collect();
        assert!(encrypted.iter().any(|m| m["body"] == "after the crashes"));
        for m in encrypted {
            assert_eq!(
                m["decrypted"], true,
                "a sent event cannot be decrypted: {m}"
            );
        }
    }
}

/// (d) EXP-04: a key import killed at random points leaves a store that
/// opens, and the next import completes it.
#[test]
fn import_killed_at_random_points() {
    let alice = server().register("alice").unwrap();
    let url = server().url();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    login(d1.path(), &url, &alice);
    let room = run(
        d1.path(),
        &["create-room", "--rotation-period-msgs", "1"],
        None,
    )[0]["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..30 {
        run(d1.path(), &["send", &room, &format!("secret {i}")], None);
    }
    let (file, pass) = (d1.path().join("keys"), d1.path().join("pass"));
    std::fs::write(&pass, "pw\n").unwrap();
    let (file, pass) = (file.to_str().unwrap(), pass.to_str().unwrap());
    run(
        d1.path(),
        &["keys", "export", file, "--passphrase-file", pass],
        None,
    );
    login(d2.path(), &url, &alice);
    for _ in 0..5 {
        kill_after(
            spawn(
                d2.path(),
                &["keys", "import", file, "--passphrase-file", pass],
            ),
            random_ms(1500),
        );
        assert!(
            newt(d2.path(), &["whoami"], None).status.success(),
            "the store does not open after the kill"
        );
    }
    run(
        d2.path(),
        &["keys", "import", file, "--passphrase-file", pass],
        None,
    );
    let history = run(d2.path(), &["history", &room, "--limit", "100"], None);
    let readable = history.iter().filter(|m| m["decrypted"] == true).count();
    assert_eq!(readable, 30, "{history:?}");
}
