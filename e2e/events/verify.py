"""Checks one request to the app's webhook with the official Standard Webhooks library
(PyPI `standardwebhooks`), using only the secret: prints the event's JSON and exits 0
when it verifies, prints why and exits 1 when it does not.

Usage: verify.py SECRET WEBHOOK_ID WEBHOOK_TIMESTAMP WEBHOOK_SIGNATURE < body
"""

import json
import sys

from standardwebhooks import Webhook, WebhookVerificationError

secret, msg_id, timestamp, signature = sys.argv[1:5]
headers = {
    "webhook-id": msg_id,
    "webhook-timestamp": timestamp,
    "webhook-signature": signature,
}
body = sys.stdin.buffer.read()
try:
    event = Webhook(secret).verify(body, headers)
except WebhookVerificationError as refused:
    print(f"refused: {refused}")
    sys.exit(1)
print(json.dumps(event))
