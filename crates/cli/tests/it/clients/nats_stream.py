"""Reads a JetStream stream from its start with nats-py (a client no one
here wrote) and prints one JSON line per message, in stream order.

usage: nats_stream.py URL STREAM SUBJECTS EXPECTED IDLE_SECONDS [--delete]

Stops once EXPECTED distinct event ids were read, or after IDLE_SECONDS
without a message; with --delete, deletes the stream afterwards."""

import asyncio
import json
import sys

import nats


async def main():
    url, stream, subjects, expected, idle = sys.argv[1:6]
    expected, idle = int(expected), float(idle)
    delete = "--delete" in sys.argv[6:]
    nc = await nats.connect(url)
    js = nc.jetstream()
    seen = set()
    if expected > 0:
        sub = await js.subscribe(subjects, stream=stream, ordered_consumer=True)
        while len(seen) < expected:
            try:
                msg = await sub.next_msg(timeout=idle)
            except nats.errors.TimeoutError:
                break
            headers = msg.headers or {}
            body = json.loads(msg.data)
            seen.add(headers.get("Nats-Msg-Id"))
            print(json.dumps({
                "id": headers.get("Nats-Msg-Id"),
                "seq": int(headers.get("cds-events-seq", "0")),
                "type": headers.get("cds-events-type"),
                "subject": msg.subject,
                "body_id": body.get("id"),
                "body_type": body.get("type"),
            }), flush=True)
        await sub.unsubscribe()
    if delete:
        try:
            await js.delete_stream(stream)
        except nats.js.errors.NotFoundError:
            pass
    await nc.close()


asyncio.run(main())
