//! The Olm channel between newt devices on a real Synapse: device
//! tracking, claims, encrypted to-device messages in every direction,
//! restarts and recovery from a lost session (TRK-*, CLM-*, OLM-*, REC-*).

use crate::common::{fast_retry, login, server};
use newt_client::Client;
use newt_client::profile::Profile;
use newt_crypto::ruma::OwnedUserId;
use newt_crypto::{Recipients, SenderTrust, ToDeviceOutcome};
use serde_json::{Value, json};
use std::time::Duration;

fn uid(client: &Client) -> OwnedUserId {
    client.identity().user_id.as_str().try_into().unwrap()
}

/// Syncs until `count` decrypted `m.test` events arrived (or 20 syncs).
async fn receive(client: &mut Client, count: usize) -> Vec<(String, String, Value)> {
    let mut got = Vec::new();
    for _ in 0..20 {
        client.sync_once(Duration::from_millis(500)).await.unwrap();
        for outcome in client.take_to_device() {
            match outcome {
                ToDeviceOutcome::Decrypted(event) if event.event_type == "m.test" => {
                    assert_eq!(event.trust, SenderTrust::KnownDevice, "{event:?}");
                    let device = event
                        .sender_device
                        .map(|d| d.to_string())
                        .unwrap_or_default();
                    got.push((event.sender.to_string(), device, event.content));
                }
                ToDeviceOutcome::Rejected { error, .. } => panic!("rejected: {error}"),
                _ => {}
            }
        }
        if got.len() >= count {
            break;
        }
    }
    got
}

async fn send(from: &mut Client, to: &[OwnedUserId], n: u32) {
    let outcome = from
        .send_to_device_encrypted(
            "m.test",
            &json!({"n": n, "from": from.identity().device_id}),
            Recipients::Users(to.to_vec()),
        )
        .await
        .unwrap();
    assert!(outcome.missing_sessions.is_empty(), "{outcome:?}");
}

/// Three newt devices of two users exchange Olm-encrypted messages in
/// every direction; a restarted device carries on without a new session.
#[tokio::test(flavor = "multi_thread")]
async fn three_devices_two_users_every_direction_with_restart() {
    let alice = server().register("alice").unwrap();
    let bob = server().register("bob").unwrap();
    let (d1, d2, d3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let mut a1 = login(&alice, d1.path()).await;
    let mut a2 = login(&alice, d2.path()).await;
    let mut b1 = login(&bob, d3.path()).await;
    // A1 learns about A2 from its sync's device-list changes.
    a1.sync_once(Duration::ZERO).await.unwrap();
    let (alice_id, bob_id) = (uid(&a1), uid(&b1));
    assert_eq!(
        a1.devices(&alice_id).unwrap().len(),
        1,
        "A1 does not know A2"
    );

    send(&mut a1, &[alice_id.clone(), bob_id.clone()], 1).await;
    assert_eq!(receive(&mut a2, 1).await[0].2["n"], 1);
    assert_eq!(receive(&mut b1, 1).await[0].2["n"], 1);
    send(&mut b1, &[alice_id.clone()], 2).await;
    let at_a1 = receive(&mut a1, 1).await;
    assert_eq!(
        (at_a1[0].0.as_str(), at_a1[0].2["n"].as_u64()),
        (bob_id.as_str(), Some(2))
    );
    assert_eq!(receive(&mut a2, 1).await[0].2["n"], 2);
    send(&mut a2, &[alice_id.clone(), bob_id.clone()], 3).await;
    assert_eq!(receive(&mut a1, 1).await[0].2["n"], 3);
    assert_eq!(receive(&mut b1, 1).await[0].2["n"], 3);

    // Restart B1 mid-conversation: the store is reopened from disk.
    let profile = b1.profile().clone();
    drop(b1);
    let mut b1 = Client::open_profile(profile, fast_retry(), None).unwrap();
    let claims_before = claim_count(&mut b1);
    send(&mut b1, &[alice_id.clone()], 4).await;
    assert_eq!(
        claim_count(&mut b1),
        claims_before,
        "the restarted device made new sessions"
    );
    assert_eq!(receive(&mut a1, 1).await[0].2["n"], 4);
    assert_eq!(receive(&mut a2, 1).await[0].2["n"], 4);
    send(&mut a1, &[bob_id.clone()], 5).await;
    assert_eq!(receive(&mut b1, 1).await[0].2["n"], 5);
}

/// Olm sessions in a profile's store (through its own connection).
fn claim_count(client: &mut Client) -> usize {
    let db = client.profile().dir().join("store.db");
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT COUNT(*) FROM olm_sessions", [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap() as usize
}

/// REC-01..03: a device that loses its Olm sessions cannot read the next
/// message; it makes a new session and sends `m.dummy`, and the message
/// after that decrypts.
#[tokio::test(flavor = "multi_thread")]
async fn lost_session_recovers_through_dummy() {
    let alice = server().register("alice").unwrap();
    let bob = server().register("bob").unwrap();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a1 = login(&alice, d1.path()).await;
    let mut b1 = login(&bob, d2.path()).await;
    let (alice_id, bob_id) = (uid(&a1), uid(&b1));
    send(&mut a1, &[bob_id.clone()], 1).await;
    assert_eq!(receive(&mut b1, 1).await.len(), 1);
    send(&mut b1, &[alice_id.clone()], 2).await;
    assert_eq!(receive(&mut a1, 1).await.len(), 1);

    // Bob's device loses its session state.
    let profile: Profile = b1.profile().clone();
    drop(b1);
    {
        let conn = rusqlite::Connection::open(profile.dir().join("store.db")).unwrap();
        conn.execute("DELETE FROM olm_sessions", []).unwrap();
    }
    let mut b1 = Client::open_profile(profile, fast_retry(), None).unwrap();

    send(&mut a1, &[bob_id.clone()], 3).await;
    let mut rejected = 0;
    for _ in 0..10 {
        b1.sync_once(Duration::from_millis(500)).await.unwrap();
        rejected += b1
            .take_to_device()
            .into_iter()
            .filter(|o| {
                matches!(
                    o,
                    ToDeviceOutcome::Rejected {
                        error: newt_crypto::ToDeviceError::NoSession,
                        ..
                    }
                )
            })
            .count();
        if rejected > 0 {
            break;
        }
    }
    assert_eq!(rejected, 1, "the undecryptable message was not reported");
    // A1 receives the m.dummy on a new session...
    let mut dummy = false;
    for _ in 0..10 {
        a1.sync_once(Duration::from_millis(500)).await.unwrap();
        dummy |= a1
            .take_to_device()
            .iter()
            .any(|o| matches!(o, ToDeviceOutcome::Decrypted(e) if e.event_type == "m.dummy"));
        if dummy {
            break;
        }
    }
    assert!(dummy, "no m.dummy arrived");
    // ...and its next message decrypts.
    send(&mut a1, &[bob_id.clone()], 4).await;
    assert_eq!(receive(&mut b1, 1).await[0].2["n"], 4);
}
