from config.env import env_int, env_str

# Plain SMTP for the embedded run (any local sink); set EMAIL_BACKEND to an anymail ESP backend in
# production, e.g. anymail.backends.postmark.EmailBackend, with its ANYMAIL_* credentials.
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 1025, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Engage <noreply@localhost>")
ANYMAIL: dict[str, object] = {}
