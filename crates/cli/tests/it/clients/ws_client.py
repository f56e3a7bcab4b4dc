"""A websocket client that no one on this project wrote the protocol side of:
the `websocket-client` package from PyPI.

usage: ws_client.py URL TOKEN SECONDS MAX MESSAGE...
Sends each MESSAGE (JSON text), then prints every message received, one per
line, until MAX messages or SECONDS of silence, or the server closes.
A negative SECONDS is a stalled client: it sends, prints MAX messages and
then "stalled", reads nothing more for that long, and exits."""
import sys

import websocket

url, token, seconds, most = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
try:
    ws = websocket.create_connection(url, header=[f"Authorization: Bearer {token}"], timeout=abs(seconds))
except websocket.WebSocketBadStatusException as e:
    print('{"handshake_status": %d}' % e.status_code)
    sys.exit(0)
for message in sys.argv[5:]:
    ws.send(message)
if seconds < 0:
    import time
    for _ in range(most):
        print(ws.recv(), flush=True)
    print("stalled", flush=True)
    time.sleep(-seconds)
    sys.exit(0)
received = 0
try:
    while received < most:
        text = ws.recv()
        if not text:
            break
        print(text, flush=True)
        received += 1
except (websocket.WebSocketTimeoutException, websocket.WebSocketConnectionClosedException):
    pass
ws.close()
