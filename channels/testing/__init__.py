"""Local servers that speak each provider's protocol, for the tests and for ``manage.py
provider_sandbox``: an SMTP sink, fake FCM (OAuth + HTTP v1), fake APNs (HTTP/2), a web push
service that decrypts what it receives, fake Twilio, and a webhook receiver. They listen on
loopback only, on ephemeral ports unless told otherwise, and record what they receive.
"""

from .apns import FakeApns
from .fcm import FakeFcm
from .http import Received, Response
from .smtp import SmtpMessage, SmtpSink
from .twilio import FakeTwilio
from .webhook import WebhookReceiver
from .webpush import BrowserKeys, FakeWebPush

__all__ = [
    "BrowserKeys",
    "FakeApns",
    "FakeFcm",
    "FakeTwilio",
    "FakeWebPush",
    "Received",
    "Response",
    "SmtpMessage",
    "SmtpSink",
    "WebhookReceiver",
]
