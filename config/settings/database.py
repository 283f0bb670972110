from config.env import database_from_url, env_int, env_str

from .core import DATA_DIR

# With no DATABASE_URL, the embedded PostgreSQL that ``./run`` starts under .data/ (Unix socket in
# .data/run). The launcher and the test command export DATABASE_URL themselves, so this default only
# matters for a bare ``manage.py`` next to a running embedded server.
EMBEDDED_DATABASE_URL = f"postgresql://postgres@/engage?host={DATA_DIR / 'run'}"
DATABASE_URL = env_str("DATABASE_URL", EMBEDDED_DATABASE_URL)
DATABASES = {"default": database_from_url(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60, minimum=0))}
