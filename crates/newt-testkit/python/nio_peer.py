"""An independent Matrix E2EE client (matrix-nio) driven by newt's tests.

Usage: nio_peer.py HOMESERVER USER PASSWORD STORE_DIR COMMAND [ARGS...]
  join ROOM                 accept the invite and sync
  send ROOM TEXT            send an encrypted text message
  read ROOM BODY TIMEOUT    sync until a message with BODY arrives; print
                            one JSON line per message seen
  export FILE PASSPHRASE    write this device's room keys to FILE
  import-read FILE PASSPHRASE ROOM BODY TIMEOUT
                            import room keys, then read as above
Every command logs in once per store (device kept) and uploads keys.
"""

import asyncio
import json
import os
import sys

from nio import AsyncClient, AsyncClientConfig, MegolmEvent, RoomMessageText


async def client_for(homeserver, user, password, store):
    os.makedirs(store, exist_ok=True)
    config = AsyncClientConfig(store_sync_tokens=True, encryption_enabled=True)
    session_file = os.path.join(store, "session.json")
    client = AsyncClient(homeserver, user, store_path=store, config=config)
    if os.path.exists(session_file):
        with open(session_file) as f:
            saved = json.load(f)
        client.restore_login(saved["user_id"], saved["device_id"], saved["access_token"])
    else:
        response = await client.login(password, device_name="nio peer")
        if not hasattr(response, "access_token"):
            raise SystemExit(f"login failed: {response}")
        with open(session_file, "w") as f:
            json.dump({"user_id": response.user_id, "device_id": response.device_id,
                       "access_token": response.access_token}, f)
    if client.should_upload_keys:
        await client.keys_upload()
    return client


async def settle(client, timeout=1000):
    response = await client.sync(timeout=timeout, full_state=True)
    if client.should_upload_keys:
        await client.keys_upload()
    if client.should_query_keys:
        await client.keys_query()
    return response


def emit(room_id, event):
    if isinstance(event, RoomMessageText):
        line = {"room_id": room_id, "event_id": event.event_id, "sender": event.sender,
                "body": event.body, "decrypted": bool(getattr(event, "decrypted", False))}
    elif isinstance(event, MegolmEvent):
        line = {"room_id": room_id, "event_id": event.event_id, "sender": event.sender,
                "body": None, "decrypted": False}
    else:
        return None
    print(json.dumps(line), flush=True)
    return line


async def main(homeserver, user, password, store, command, *args):
    client = await client_for(homeserver, user, password, store)
    try:
        if command == "join":
            await settle(client, 0)
            await client.join(args[0])
            await settle(client, 0)
        elif command == "send":
            room_id, text = args
            await settle(client, 0)
            response = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text},
                                              ignore_unverified_devices=True)
            print(json.dumps({"event_id": getattr(response, "event_id", None), "response": str(type(response).__name__)}),
                  flush=True)
            if not getattr(response, "event_id", None):
                raise SystemExit(f"send failed: {response}")
        elif command == "export":
            await settle(client, 0)
            await client.export_keys(args[0], args[1])
        elif command in ("read", "import-read"):
            if command == "import-read":
                await client.import_keys(args[0], args[1])
                args = args[2:]
            room_id, body, timeout = args[0], args[1], float(args[2])
            deadline = asyncio.get_event_loop().time() + timeout
            found = False
            while not found and asyncio.get_event_loop().time() < deadline:
                response = await settle(client, 500)
                room = response.rooms.join.get(room_id) if hasattr(response, "rooms") else None
                for event in (room.timeline.events if room else []):
                    line = emit(room_id, event)
                    if line and line["body"] == body:
                        found = True
            if not found:
                raise SystemExit(f"never read {body!r}")
        else:
            raise SystemExit(f"unknown command {command}")
    finally:
        await client.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
