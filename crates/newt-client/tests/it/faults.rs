//! Fault scenarios through the proxy against a real Synapse: every one
//! ends with the message readable and nothing lost.

use crate::common::{fast_retry, login, options, server};
use newt_client::{Client, CreateRoom, RoomMessage};
use newt_testkit::{Action, Proxy, Rule};
use std::collections::BTreeMap;
use std::time::Duration;

fn unavailable(code: u16) -> Action {
    Action::Status {
        code,
        retry_after_secs: None,
        retry_after_ms: None,
    }
}

/// Syncs (ignoring failed rounds) until every body in `wanted` decrypted.
async fn read_all(
    client: &mut Client,
    wanted: &[String],
    rounds: usize,
) -> BTreeMap<String, RoomMessage> {
    let mut seen = BTreeMap::new();
    for _ in 0..rounds {
        let _ = client.sync_once(Duration::from_millis(300)).await;
        for m in client.take_messages() {
            if m.decrypted
                && let Some(body) = m.body.clone()
            {
                seen.insert(body, m);
            }
        }
        if wanted.iter().all(|w| seen.contains_key(w)) {
            break;
        }
    }
    seen
}

/// A room of `owner` with `others` joined; every client has synced.
async fn room_with(
    owner: &mut Client,
    others: &mut [&mut Client],
    rotation_msgs: Option<u64>,
) -> String {
    let invite = others.iter().map(|c| c.identity().user_id).collect();
    let room = owner
        .create_room(&CreateRoom {
            invite,
            rotation_period_msgs: rotation_msgs,
            ..CreateRoom::default()
        })
        .await
        .unwrap();
    for other in others.iter_mut() {
        other.sync_once(Duration::ZERO).await.unwrap();
        other.join(&room).await.unwrap();
    }
    owner.sync_once(Duration::ZERO).await.unwrap();
    room
}

/// Alice behind a proxy, Bob direct, in an encrypted room together.
struct Pair {
    proxy: Proxy,
    a: Client,
    b: Client,
    room: String,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn proxied_pair() -> Pair {
    let (alice, bob) = (
        server().register("alice").unwrap(),
        server().register("bob").unwrap(),
    );
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let proxy = Proxy::start(server().port()).unwrap();
    let mut a = Client::login(options(&proxy.url(), &alice, da.path()))
        .await
        .unwrap();
    let mut b = login(&bob, db.path()).await;
    let room = room_with(&mut a, &mut [&mut b], None).await;
    Pair {
        proxy,
        a,
        b,
        room,
        _dirs: (da, db),
    }
}

/// CLM-04: `/keys/claim` fails (past every retry), the send fails; the
/// next send claims again and the message arrives.
#[tokio::test(flavor = "multi_thread")]
async fn failed_claim_is_retried_by_the_next_send() {
    let Pair {
        proxy,
        mut a,
        mut b,
        room,
        _dirs,
    } = proxied_pair().await;
    proxy.add_rule(Rule::new("/keys/claim", 1000, unavailable(503)));
    assert!(
        a.send_text(&room, "first try").await.is_err(),
        "the send went through without sessions"
    );
    let claims = proxy.count("/keys/claim");
    proxy.clear_rules();
    a.send_text(&room, "second try").await.unwrap();
    assert!(
        proxy.count("/keys/claim") > claims,
        "the next send did not claim again"
    );
    let seen = read_all(&mut b, &["second try".into()], 20).await;
    assert!(seen.contains_key("second try"));
}

/// TRK-11, OLM-11: the receiver's `/keys/query` fails while a room key
/// arrives; the key is kept, and once a query works the message decrypts.
#[tokio::test(flavor = "multi_thread")]
async fn failed_query_loses_no_room_key() {
    let (alice, bob) = (
        server().register("alice").unwrap(),
        server().register("bob").unwrap(),
    );
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let proxy = Proxy::start(server().port()).unwrap();
    let mut a = login(&alice, da.path()).await;
    let mut b = Client::open_profile(
        {
            let client = Client::login(options(&proxy.url(), &bob, db.path()))
                .await
                .unwrap();
            client.profile().clone()
        },
        fast_retry(),
        Some(&proxy.url()),
    )
    .unwrap();
    proxy.add_rule(Rule::new("/keys/query", 10_000, unavailable(502)));
    let room = room_with(&mut a, &mut [&mut b], None).await;
    a.send_text(&room, "kept safe").await.unwrap();
    // Bob's syncs carry the key but his queries keep failing.
    let mut utd = false;
    for _ in 0..5 {
        let _ = b.sync_once(Duration::from_millis(200)).await;
        utd |= b
            .take_messages()
            .iter()
            .any(|m| m.encrypted && !m.decrypted);
    }
    assert!(utd, "the message should wait for its key");
    proxy.clear_rules();
    let seen = read_all(&mut b, &["kept safe".into()], 20).await;
    assert!(seen.contains_key("kept safe"), "the room key was lost");
}

/// TD-05: `/sendToDevice` answers 504 twice; the retry reuses the
/// transaction ID and body, and the key arrives once.
#[tokio::test(flavor = "multi_thread")]
async fn send_to_device_retry_reuses_the_transaction() {
    let Pair {
        proxy,
        mut a,
        mut b,
        room,
        _dirs,
    } = proxied_pair().await;
    proxy.add_rule(Rule::new("/sendToDevice", 2, unavailable(504)));
    a.send_text(&room, "after 504s").await.unwrap();
    let sends: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|r| r.path.contains("/sendToDevice"))
        .collect();
    assert_eq!(sends.len(), 3);
    assert!(
        sends
            .iter()
            .all(|s| s.path == sends[0].path && s.body == sends[0].body)
    );
    let seen = read_all(&mut b, &["after 504s".into()], 20).await;
    assert!(seen.contains_key("after 504s"));
}

/// OLM-12: a held `/sync` is released after 4 senders sent 120 messages,
/// each with its own room key (rotation after every message); every event
/// decrypts.
#[tokio::test(flavor = "multi_thread")]
async fn held_sync_releases_120_room_keys() {
    let bob = server().register("bob").unwrap();
    let db = tempfile::tempdir().unwrap();
    let proxy = Proxy::start(server().port()).unwrap();
    let mut b = Client::login(options(&proxy.url(), &bob, db.path()))
        .await
        .unwrap();
    let mut senders = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..4 {
        let user = server().register(&format!("s{i}")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        senders.push(login(&user, dir.path()).await);
        dirs.push(dir);
    }
    let (first, rest) = senders.split_at_mut(1);
    let mut others: Vec<&mut Client> = rest.iter_mut().collect();
    others.push(&mut b);
    let room = room_with(&mut first[0], &mut others, Some(1)).await;
    for sender in senders.iter_mut() {
        sender.sync_once(Duration::ZERO).await.unwrap();
    }
    b.sync_once(Duration::ZERO).await.unwrap();
    b.take_messages();
    // Bob's next sync is held until everything was sent.
    proxy.add_rule(Rule::new("/sync", 1, Action::HoldUntilReleased));
    let held = tokio::spawn(async move {
        let _ = b.sync_once(Duration::ZERO).await;
        b
    });
    let mut wanted = Vec::new();
    for n in 0..30 {
        for (i, sender) in senders.iter_mut().enumerate() {
            let body = format!("s{i} m{n}");
            sender.send_text(&room, &body).await.unwrap();
            assert!(
                sender.last_share().is_some_and(|s| s.rotated),
                "a room key per message"
            );
            wanted.push(body);
        }
    }
    proxy.release();
    let mut b = held.await.unwrap();
    // Every to-device event is taken in, in order, over as many syncs as
    // the server needs (about 100 per sync); the timeline of one sync is
    // limited, so the room's history is read back to check every event.
    for _ in 0..10 {
        b.sync_once(Duration::from_millis(200)).await.unwrap();
    }
    let history = b.history(&room, 300).await.unwrap();
    let seen: BTreeMap<String, RoomMessage> = history
        .into_iter()
        .filter(|m| m.decrypted)
        .filter_map(|m| Some((m.body.clone()?, m)))
        .collect();
    let missing: Vec<_> = wanted.iter().filter(|w| !seen.contains_key(*w)).collect();
    assert!(missing.is_empty(), "not decrypted: {missing:?}");
}

/// Two clients on one profile (two processes on one store) send the same
/// pending `/sendToDevice`: the second to hear back finds the request
/// settled by the other, and its send goes on; the message arrives.
#[tokio::test(flavor = "multi_thread")]
async fn request_settled_by_another_client_on_the_profile_is_not_an_error() {
    let Pair {
        proxy,
        mut a,
        mut b,
        room,
        _dirs,
    } = proxied_pair().await;
    let mut other = Client::restore(_dirs.0.path(), fast_retry()).await.unwrap();
    proxy.add_rule(Rule::new("/sendToDevice", 1, Action::HoldUntilReleased));
    let settle = async {
        // The room key reached the server; its answer is held.
        let at_server = |p: &Proxy| {
            p.log()
                .iter()
                .any(|r| r.path.contains("/sendToDevice") && r.upstream_status.is_some())
        };
        for _ in 0..1000 {
            if at_server(&proxy) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(at_server(&proxy), "the room key never reached the server");
        // The other client reads the same pending request and settles it.
        let answered = other.process_outgoing().await.unwrap();
        proxy.release();
        answered
    };
    let (sent, answered) = tokio::join!(a.send_text(&room, "held, then settled"), settle);
    sent.unwrap();
    assert!(answered >= 1, "the other client sent nothing");
    let seen = read_all(&mut b, &["held, then settled".into()], 20).await;
    assert!(seen.contains_key("held, then settled"));
}
