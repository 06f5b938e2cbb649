//! `listen --auto-join` and `logout`, driven as a person or a bot would.

use crate::{login_json, newt, run_json, server};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A bot listening with `--auto-join` joins the room it is invited to and
/// prints the first message sent there, decrypted.
#[test]
fn auto_join_then_read() {
    let (alice, bot) = (
        server().register("alice").unwrap(),
        server().register("bot").unwrap(),
    );
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = server().url();
    login_json(da.path(), &url, &alice);
    login_json(db.path(), &url, &bot);
    let mut listener = Command::new(env!("CARGO_BIN_EXE_newt"))
        .arg("--data-dir")
        .arg(db.path())
        .args(["listen", "--auto-join", "--count", "1", "--timeout", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let room = run_json(da.path(), &["create-room", "--invite", &bot.user_id], None)[0]["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Wait for the bot to say it joined (stderr narration in human mode).
    let stderr = BufReader::new(listener.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut joined = false;
    for line in stderr.lines() {
        if line.unwrap().contains(&format!("joined {room}")) {
            joined = true;
            break;
        }
        assert!(Instant::now() < deadline, "the bot never joined");
    }
    assert!(joined);
    run_json(da.path(), &["send", &room, "hello bot"], None);
    let out = listener.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("hello bot"), "{stdout}");
    assert!(!stdout.contains("unable to decrypt"), "{stdout}");
}

/// `logout` ends the device and keeps the store aside; `whoami` then says
/// to log in.
#[test]
fn logout_keeps_the_store_aside() {
    let alice = server().register("alice").unwrap();
    let dir = tempfile::tempdir().unwrap();
    login_json(dir.path(), &server().url(), &alice);
    let out = run_json(dir.path(), &["logout"], None).remove(0);
    let kept = std::path::PathBuf::from(out["kept"].as_str().unwrap());
    assert!(kept.join("store.db").exists(), "the old store was not kept");
    let whoami = newt(dir.path(), &["whoami"], None);
    assert_eq!(whoami.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&whoami.stderr).contains("newt login"));
}
