//! `create-room`, `invite`, `join`, `leave`, `rooms`.

use super::client;
use crate::args::CreateRoomArgs;
use crate::config::Config;
use crate::output::Output;
use newt_client::CreateRoom;
use serde_json::json;

/// `newt create-room`
pub async fn create(config: &Config, out: Output, args: &CreateRoomArgs) -> anyhow::Result<()> {
    let mut client = client(config).await?;
    let room_id = client
        .create_room(&CreateRoom {
            name: args.name.clone(),
            invite: args.invite.clone(),
            history_visibility: args.history_visibility.clone(),
            rotation_period_msgs: args.rotation_period_msgs,
            rotation_period_ms: args.rotation_period_ms,
            unencrypted: args.unencrypted,
        })
        .await
        .map_err(crate::errors::explain)?;
    out.emit(
        &room_id,
        &json!({"room_id": room_id, "encrypted": !args.unencrypted}),
    )?;
    Ok(())
}

/// `newt invite ROOM USER`
pub async fn invite(config: &Config, out: Output, room: &str, user: &str) -> anyhow::Result<()> {
    let mut client = client(config).await?;
    client
        .invite(room, user)
        .await
        .map_err(crate::errors::explain)?;
    out.emit(
        &format!("invited {user} to {room}"),
        &json!({"room_id": room, "invited": user}),
    )?;
    Ok(())
}

/// `newt join ROOM`
pub async fn join(config: &Config, out: Output, room: &str) -> anyhow::Result<()> {
    let mut client = client(config).await?;
    let room_id = client.join(room).await.map_err(crate::errors::explain)?;
    // Catch up with the room, so the next command starts from here.
    client
        .sync_once(std::time::Duration::ZERO)
        .await
        .map_err(crate::errors::explain)?;
    out.emit(
        &format!("joined {room_id}"),
        &json!({"room_id": room_id, "joined": true}),
    )?;
    Ok(())
}

/// `newt leave ROOM`
pub async fn leave(config: &Config, out: Output, room: &str) -> anyhow::Result<()> {
    let mut client = client(config).await?;
    client.leave(room).await.map_err(crate::errors::explain)?;
    out.emit(
        &format!("left {room}"),
        &json!({"room_id": room, "left": true}),
    )?;
    Ok(())
}

/// `newt rooms`
pub async fn list(config: &Config, out: Output) -> anyhow::Result<()> {
    let mut client = client(config).await?;
    for room in client.rooms().map_err(crate::errors::explain)? {
        let human = format!(
            "{}  {:<6} {}{}",
            room.room_id,
            room.membership,
            room.name.as_deref().unwrap_or("-"),
            if room.encrypted { "  (encrypted)" } else { "" }
        );
        out.emit(&human, &serde_json::to_value(&room)?)?;
    }
    Ok(())
}
