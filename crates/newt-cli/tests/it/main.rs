//! Drives the `newt` binary as a script would, against a real Synapse.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::cloned_ref_to_slice_refs)]

mod conversation;
mod crash;
mod listen;

use newt_testkit::Synapse;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

pub(crate) fn server() -> &'static Synapse {
    Synapse::shared().unwrap_or_else(|e| panic!("Synapse did not start: {e}"))
}

pub(crate) fn newt(data_dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_newt"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(input) = stdin {
        pipe.write_all(input.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// Runs newt with `--json` to completion and returns its JSON lines;
/// fails the test if newt fails.
pub(crate) fn run_json(dir: &Path, args: &[&str], stdin: Option<&str>) -> Vec<Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = newt(dir, &all, stdin);
    assert!(
        out.status.success(),
        "newt {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `newt login` with the password on stdin; returns the identity.
pub(crate) fn login_json(
    dir: &Path,
    url: &str,
    user: &newt_testkit::synapse::RegisteredUser,
) -> Value {
    let stdin = format!("{}\n", user.password);
    run_json(
        dir,
        &["login", "--homeserver", url, "--user", &user.localpart],
        Some(&stdin),
    )
    .remove(0)
}

fn json_line(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "newt failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let mut lines = stdout.lines();
    let value = serde_json::from_str(lines.next().expect("no output")).unwrap();
    assert!(lines.next().is_none(), "more than one line: {stdout}");
    value
}

/// `login` with the password on stdin, then `whoami --json` from the
/// store: the same user, device and keys, all fields present.
#[test]
fn login_then_whoami_json() {
    let user = server().register("cli").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let login = newt(
        dir.path(),
        &[
            "--json",
            "login",
            "--homeserver",
            &server().url(),
            "--user",
            &user.localpart,
        ],
        Some(&format!("{}\n", user.password)),
    );
    let login = json_line(&login);
    assert_eq!(login["user_id"], user.user_id.as_str());
    let whoami = json_line(&newt(dir.path(), &["whoami", "--json"], None));
    assert_eq!(whoami, login);
    for field in [
        "homeserver",
        "user_id",
        "device_id",
        "ed25519",
        "curve25519",
    ] {
        assert!(
            whoami[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field} missing"
        );
    }
    // Human output names the same keys.
    let human = newt(dir.path(), &["whoami"], None);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains(whoami["ed25519"].as_str().unwrap()));
    assert!(text.contains(whoami["device_id"].as_str().unwrap()));
}

/// `--password-file` works, and a second login keeps the device.
#[test]
fn password_file_and_device_kept() {
    let user = server().register("cli").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{}\n", user.password)).unwrap();
    let args = [
        "--json",
        "login",
        "--homeserver",
        &server().url(),
        "--user",
        &user.user_id,
        "--password-file",
    ];
    let mut args: Vec<&str> = args.to_vec();
    let pw_str = pw.to_str().unwrap().to_owned();
    args.push(&pw_str);
    let first = json_line(&newt(dir.path(), &args, None));
    let second = json_line(&newt(dir.path(), &args, None));
    assert_eq!(first["device_id"], second["device_id"]);
    assert_eq!(first["ed25519"], second["ed25519"]);
}

/// Errors for people: one clear line, non-zero exit, nothing lost.
#[test]
fn errors_are_clear() {
    let user = server().register("cli").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrong = newt(
        dir.path(),
        &[
            "login",
            "--homeserver",
            &server().url(),
            "--user",
            &user.localpart,
        ],
        Some("not-the-password\n"),
    );
    assert_eq!(wrong.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("M_FORBIDDEN") && stderr.contains("password"),
        "{stderr}"
    );

    let unreachable = newt(
        dir.path(),
        &["login", "--homeserver", "http://127.0.0.1:9", "--user", "x"],
        Some("pw\n"),
    );
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach"));

    // A room that does not exist, and a wrong key-file passphrase.
    // Asserts that the login succeeded.
    login_json(dir.path(), &server().url(), &user);
    let nowhere = newt(dir.path(), &["send", "!nowhere:localhost", "hello"], None);
    assert_eq!(nowhere.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&nowhere.stderr);
    assert!(
        stderr.contains("not in that room") && stderr.lines().count() == 1,
        "{stderr}"
    );
    let (keys, good, bad) = (
        dir.path().join("k"),
        dir.path().join("good"),
        dir.path().join("bad"),
    );
    std::fs::write(&good, "right\n").unwrap();
    std::fs::write(&bad, "wrong\n").unwrap();
    let export = newt(
        dir.path(),
        &[
            "keys",
            "export",
            keys.to_str().unwrap(),
            "--passphrase-file",
            good.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let import = newt(
        dir.path(),
        &[
            "keys",
            "import",
            keys.to_str().unwrap(),
            "--passphrase-file",
            bad.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(import.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&import.stderr).contains("wrong passphrase"));
    std::fs::remove_dir_all(dir.path().join("profiles")).unwrap();
    std::fs::remove_file(dir.path().join("current")).unwrap();

    let nobody = newt(dir.path(), &["whoami"], None);
    assert_eq!(nobody.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("newt login"));
}

/// A damaged store is refused with advice and left as it was.
#[test]
fn corrupt_store_is_refused_and_untouched() {
    let user = server().register("cli").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Asserts that the login succeeded.
    login_json(dir.path(), &server().url(), &user);
    let name = std::fs::read_to_string(dir.path().join("current")).unwrap();
    let db = dir
        .path()
        .join("profiles")
        .join(name.trim())
        .join("store.db");
    let bytes = std::fs::read(&db).unwrap();
    let damaged = &bytes[..bytes.len() / 2];
    std::fs::write(&db, damaged).unwrap();
    let out = newt(dir.path(), &["whoami"], None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("damaged") && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert_eq!(std::fs::read(&db).unwrap(), damaged);
}

/// Usage errors exit 2 (clap's convention).
#[test]
fn usage_error_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = newt(dir.path(), &["login"], None);
    assert_eq!(out.status.code(), Some(2));
}

/// The README's first command works and shows the whole flow: key
/// sharing, reuse for a late device, rotation after a leave.
#[test]
fn demo_runs_the_whole_flow() {
    let dir = tempfile::tempdir().unwrap();
    let out = newt(dir.path(), &["--json", "demo"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sends: Vec<&Value> = lines.iter().filter(|l| l["step"] == "send").collect();
    assert_eq!(sends.len(), 3);
    assert_eq!(
        (
            sends[0]["rotated"].clone(),
            sends[1]["rotated"].clone(),
            sends[2]["rotated"].clone()
        ),
        (Value::Bool(true), Value::Bool(false), Value::Bool(true))
    );
    assert_eq!(
        sends[1]["shared_with"], 1,
        "the late device alone gets the key"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l["step"] == "read")
            .all(|l| l["decrypted"] == true)
    );
    let leaver = lines.iter().find(|l| l["step"] == "leaver").unwrap();
    assert_eq!(leaver["readable"], false);
    // Nothing was written to the profile directory.
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}
