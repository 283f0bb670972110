from django.core.exceptions import ImproperlyConfigured

from config.env import env_int, env_list, env_str

# Plain SMTP for the embedded run (any local sink); set EMAIL_BACKEND to an anymail ESP backend in
# production, e.g. anymail.backends.postmark.EmailBackend, with its ANYMAIL_* credentials.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 1025, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Engage <noreply@localhost>")
ANYMAIL: dict[str, object] = {}

# ESP tracking webhooks (/anymail/<esp>/tracking/) must authenticate with HTTP Basic credentials
# "user:password" (comma-separate two while rotating). Without them anymail accepts anyone's
# webhook (with a warning), so a deployment that receives webhooks sets this.
_webhook_secrets = env_list("ANYMAIL_WEBHOOK_SECRET", [])
for _secret in _webhook_secrets:
    if ":" not in _secret:
        raise ImproperlyConfigured("ANYMAIL_WEBHOOK_SECRET must be user:password (comma-separated for rotation)")
if _webhook_secrets:
    ANYMAIL["WEBHOOK_SECRET"] = _webhook_secrets if len(_webhook_secrets) > 1 else _webhook_secrets[0]
# Mailgun also signs its webhooks; anymail checks the signature with this key when it is set.
if env_str("MAILGUN_WEBHOOK_SIGNING_KEY", ""):
    ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"] = env_str("MAILGUN_WEBHOOK_SIGNING_KEY", "")
