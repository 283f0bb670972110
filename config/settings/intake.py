from config.env import env_int

# Limits of the Segment-compatible intake (the same as Segment's own API).
INTAKE_MAX_MESSAGE_BYTES = env_int("INTAKE_MAX_MESSAGE_BYTES", 32 * 1024, minimum=1024)
INTAKE_MAX_BATCH_BYTES = env_int("INTAKE_MAX_BATCH_BYTES", 500 * 1024, minimum=1024)
# Requests per second accepted from one write key before answering 429 with Retry-After;
# an App can set its own. 0 turns the limit off.
INTAKE_RATE_LIMIT_PER_SECOND = env_int("INTAKE_RATE_LIMIT_PER_SECOND", 500, minimum=0)
# Idle time after which a screen or page call starts a new session.
SESSION_TIMEOUT_MINUTES = env_int("SESSION_TIMEOUT_MINUTES", 30, minimum=1)
