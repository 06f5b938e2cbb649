//! A whole encrypted conversation driven through the `newt` binary, as a
//! script would: two users, several devices, every JSON field checked.

use crate::server;
use serde_json::Value;
use std::path::Path;

fn run(dir: &Path, args: &[&str], stdin: Option<&str>) -> Vec<Value> {
    crate::run_json(dir, args, stdin)
}

fn login(dir: &Path, user: &newt_testkit::synapse::RegisteredUser) -> Value {
    crate::login_json(dir, &server().url(), user)
}

#[test]
fn encrypted_conversation_through_the_cli() {
    let alice = server().register("alice").unwrap();
    let bob = server().register("bob").unwrap();
    let (a1, a2, b1, a3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let alice1 = login(a1.path(), &alice);
    let alice2 = login(a2.path(), &alice);
    let bob1 = login(b1.path(), &bob);

    // Create, invite, join.
    let created = run(
        a1.path(),
        &[
            "create-room",
            "--name",
            "cli test",
            "--invite",
            &bob.user_id,
        ],
        None,
    )
    .remove(0);
    let room = created["room_id"].as_str().unwrap().to_owned();
    assert!(room.starts_with('!'));
    assert_eq!(created["encrypted"], true);
    let joined = run(b1.path(), &["join", &room], None).remove(0);
    assert_eq!(joined["room_id"], room.as_str());
    let rooms = run(a1.path(), &["rooms"], None);
    let listed = rooms
        .iter()
        .find(|r| r["room_id"] == room.as_str())
        .unwrap();
    assert_eq!(
        (listed["encrypted"].clone(), listed["name"].clone()),
        (Value::Bool(true), Value::from("cli test"))
    );

    // Send from alice's first device; bob listens.
    let sent = run(a1.path(), &["send", &room, "hello bob"], None).remove(0);
    let event_id = sent["event_id"].as_str().unwrap().to_owned();
    let heard = run(
        b1.path(),
        &["listen", "--room", &room, "--count", "1", "--timeout", "30"],
        None,
    );
    let m = &heard[0];
    assert_eq!(m["room_id"], room.as_str());
    assert_eq!(m["event_id"], event_id.as_str());
    assert_eq!(m["sender"], alice.user_id.as_str());
    assert_eq!(m["sender_device"], alice1["device_id"]);
    assert!(m["origin_server_ts"].as_u64().unwrap() > 0);
    assert_eq!(m["decrypted"], true);
    assert_eq!(m["body"], "hello bob");
    assert_eq!(m["msgtype"], "m.text");
    assert_eq!(m["trust"], "unverified_device");
    assert!(m.get("utd_reason").is_none());

    // Bob answers with the text on stdin; alice's second device reads both.
    let reply = run(b1.path(), &["send", &room], Some("hi alice\n")).remove(0);
    let history = run(a2.path(), &["history", &room, "--limit", "20"], None);
    let bodies: Vec<&str> = history
        .iter()
        .filter(|m| m["decrypted"] == true)
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(bodies, ["hello bob", "hi alice"], "{history:?}");
    assert_eq!(history.last().unwrap()["event_id"], reply["event_id"]);

    // A device that did not exist yet cannot read; `why` says so.
    let alice3 = login(a3.path(), &alice);
    let before = run(a3.path(), &["history", &room, "--limit", "20"], None);
    let utd = before
        .iter()
        .find(|m| m["event_id"] == event_id.as_str())
        .unwrap();
    assert_eq!(utd["decrypted"], false);
    assert_eq!(utd["utd_reason"], "missing_session");
    let why = run(a3.path(), &["why", &room, &event_id], None).remove(0);
    assert_eq!(why["reason"], "missing_session");
    assert_eq!(why["sent_before_this_device"], true);
    assert!(why["advice"].as_str().unwrap().contains("newt keys import"));

    // A withheld key: bob blocks alice's third device, then speaks.
    let devices = run(b1.path(), &["devices", &alice.user_id], None);
    assert!(
        devices
            .iter()
            .any(|d| d["device_id"] == alice3["device_id"])
    );
    let a3_device = alice3["device_id"].as_str().unwrap();
    let blocked = run(b1.path(), &["block", &alice.user_id, a3_device], None).remove(0);
    assert_eq!(blocked["blocked"], true);
    let secret = run(b1.path(), &["send", &room, "not for a3"], None).remove(0);
    let secret_id = secret["event_id"].as_str().unwrap();
    let heard = run(
        a3.path(),
        &["listen", "--room", &room, "--count", "1", "--timeout", "30"],
        None,
    );
    assert_eq!(heard[0]["event_id"], secret_id);
    assert_eq!(heard[0]["decrypted"], false);
    assert_eq!(heard[0]["utd_reason"], "withheld");
    assert_eq!(heard[0]["withheld_code"], "m.blacklisted");
    let why = run(a3.path(), &["why", &room, secret_id], None).remove(0);
    assert_eq!(why["withheld_code"], "m.blacklisted");
    assert_eq!(why["withheld_by"], bob.user_id.as_str());

    // Keys exported from alice's first device open that history.
    let keyfile = a1.path().join("keys.txt");
    let pass = a1.path().join("pass");
    std::fs::write(&pass, "correct horse\n").unwrap();
    let (keyfile, pass) = (keyfile.to_str().unwrap(), pass.to_str().unwrap());
    let exported = run(
        a1.path(),
        &["keys", "export", keyfile, "--passphrase-file", pass],
        None,
    )
    .remove(0);
    assert!(exported["exported"].as_u64().unwrap() >= 2);
    assert!(
        std::fs::read_to_string(keyfile)
            .unwrap()
            .starts_with("-----BEGIN MEGOLM SESSION DATA-----")
    );
    let imported = run(
        a3.path(),
        &["keys", "import", keyfile, "--passphrase-file", pass],
        None,
    )
    .remove(0);
    assert!(imported["imported"].as_u64().unwrap() >= 2);
    let after = run(a3.path(), &["history", &room, "--limit", "20"], None);
    let opened = after
        .iter()
        .find(|m| m["event_id"] == event_id.as_str())
        .unwrap();
    assert_eq!(opened["decrypted"], true);
    assert_eq!(opened["body"], "hello bob");
    assert_eq!(opened["trust"], "authenticity_not_guaranteed");

    // Leave.
    let left = run(b1.path(), &["leave", &room], None).remove(0);
    assert_eq!(left["left"], true);
    let _ = (alice2, bob1);
}
