"""Cyclecount settings, read from the environment (see README "Configuration").

Defaults are the embedded ones (SQLite and Celery's filesystem broker under var/) and are
production-safe: DEBUG is off unless set and HTTPS protections are on whenever DEBUG is off.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from datetime import timedelta
from pathlib import Path

from csp.constants import NONE, SELF, UNSAFE_INLINE

from config.env import (
    BROKER_SCHEMES,
    REDIS_SCHEMES,
    ConfigurationError,
    env_bool,
    env_database,
    env_float,
    env_int,
    env_list,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CYCLECOUNT_VAR_DIR") or BASE_DIR / "var")
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", default=False)


def _secret_key() -> str:
    configured = env_str("SECRET_KEY")
    if configured:
        if len(configured) < 50:
            raise ConfigurationError("SECRET_KEY must be at least 50 characters")
        return configured
    # No shipped default: an install without SECRET_KEY gets its own random key, kept in var/.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(64))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()


def _connection_secrets_keys() -> list[str]:
    """Fernet keys for backend connection secrets; the first encrypts, all decrypt (rotation)."""
    configured = env_list("CYCLECOUNT_SECRETS_KEYS", default=[])
    if not configured:
        # Like SECRET_KEY: an install without the variable gets its own key, kept in var/.
        key_file = VAR_DIR / "secrets_key"
        if not key_file.exists():
            key_file.write_text(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
            key_file.chmod(0o600)
        configured = [key_file.read_text().strip()]
    for key in configured:
        try:
            valid = len(base64.urlsafe_b64decode(key.encode())) == 32
        except (ValueError, binascii.Error):
            valid = False
        if not valid:
            raise ConfigurationError("CYCLECOUNT_SECRETS_KEYS must hold Fernet keys (32 url-safe base64 bytes each)")
    return configured


CONNECTION_SECRETS_KEYS = _connection_secrets_keys()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_fsm",
    "simple_history",
    "django_celery_beat",
    "import_export",
    "accounts",
    "inventory",
    "counts",
    "reconciliation",
    "approvals",
    "adapters",
    "audit",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.DatabaseUnavailableMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # PostgreSQL row-level security: the connection acts as the caller's organization (README "Tenant isolation").
    "accounts.tenancy.TenantDatabaseMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env_database("DATABASE_URL", default_sqlite_path=VAR_DIR / "cyclecount.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url("REDIS_URL", default=None, schemes=REDIS_SCHEMES)
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/admin/login/"
LOGIN_REDIRECT_URL = "/count/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
if DEBUG:
    STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    WHITENOISE_USE_FINDERS = True

# --- HTTPS and cookies: on whenever DEBUG is off --------------------------------------
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("BEHIND_TLS_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- API ---------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.MembershipTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["accounts.permissions.IsOrganizationMember"],
    "DEFAULT_PAGINATION_CLASS": "config.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "config.api_schema.NestedNameAutoSchema",
    "EXCEPTION_HANDLER": "config.api_errors.json_exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Cyclecount API",
    "DESCRIPTION": "Plan, count, reconcile and approve inventory cycle counts.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ImportKindEnum": "counts.models.ImportKind.choices",
        "CountKindEnum": "counts.models.CountKind.choices",
    },
}

# --- Adapters (systems of record) -------------------------------------------------------
ADAPTER_RETRY_BASE_SECONDS = env_float("ADAPTER_RETRY_BASE_SECONDS", default=0.5)
ADAPTER_RETRY_CAP_SECONDS = env_float("ADAPTER_RETRY_CAP_SECONDS", default=20.0)
# After this many failed drains (each with its inline retries) a batch waits for a person.
PUSH_MAX_FAILURES = env_int("PUSH_MAX_FAILURES", default=8)
# How long a drain or sync may hold a connection before another worker may take it over.
ADAPTER_WORKER_LEASE_SECONDS = env_int("ADAPTER_WORKER_LEASE_SECONDS", default=300)

# --- Celery ------------------------------------------------------------------------------
CELERY_BROKER_DIR = VAR_DIR / "celery-broker"
CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", default="filesystem://", schemes=BROKER_SCHEMES)
if CELERY_BROKER_URL.startswith("filesystem://"):
    for folder in ("queue", "processed"):
        (CELERY_BROKER_DIR / folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_DIR / "queue"),
        "data_folder_out": str(CELERY_BROKER_DIR / "queue"),
        "processed_folder": str(CELERY_BROKER_DIR / "processed"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Logging -----------------------------------------------------------------------------
LOG_LEVEL = (env_str("LOG_LEVEL") or "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ConfigurationError(f"LOG_LEVEL={LOG_LEVEL!r} is not a logging level")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# =========================================================================================
# Security: login throttling, Content-Security-Policy and headers, API rate limits
# (README "Security"). Appends to the lists and dicts above rather than rewriting them.
# =========================================================================================
INSTALLED_APPS += ["axes", "csp", "drf_spectacular_sidecar"]
MIDDLEWARE += [
    "csp.middleware.CSPMiddleware",
    "config.security.PermissionsPolicyMiddleware",
    # Last, as django-axes asks: it turns a lockout seen during authenticate() into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# --- Login throttling (django-axes) ------------------------------------------------------
# Every login goes through authenticate() (Django's LoginView, the admin's login): the axes
# backend refuses a username + IP pair after LOGIN_FAILURE_LIMIT failures until
# LOGIN_LOCKOUT_MINUTES have passed since the last failure. Attempts are kept in the database.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", default=5)
_LOCKOUT_MINUTES = env_int("LOGIN_LOCKOUT_MINUTES", default=15)
if AXES_FAILURE_LIMIT < 1 or _LOCKOUT_MINUTES < 1:
    raise ConfigurationError("LOGIN_FAILURE_LIMIT and LOGIN_LOCKOUT_MINUTES must be at least 1")
AXES_COOLOFF_TIME = timedelta(minutes=_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# A try during the lockout does not restart it, so the time on the lockout page stays true.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "accounts.views.login_locked_out"
AXES_CLIENT_IP_CALLABLE = "config.security.client_ip"
AXES_VERBOSE = False

# Behind N reverse proxies the client is the Nth address from the right of X-Forwarded-For;
# with 0 (the default) it is REMOTE_ADDR. Used by the login lockout and the anonymous API rate.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", default=0)

# --- Content-Security-Policy (django-csp) and other headers ------------------------------
# No inline or third-party script anywhere (the API docs use drf-spectacular-sidecar's copy of
# Swagger UI). Inline style *attributes* remain in templates and in Django's admin, hence
# 'unsafe-inline' for styles only.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "worker-src": [SELF],  # the count app's service worker
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
# The count app scans with the phone's camera (BarcodeDetector); nothing else is used.
PERMISSIONS_POLICY = "camera=(self), microphone=(), geolocation=(), payment=(), usb=()"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

SPECTACULAR_SETTINGS |= {
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}


# --- API rate limits (DRF throttling; counters in the default cache) ---------------------
def _env_rate(name: str, default: str) -> str | None:
    """A DRF rate such as "1200/min"; "off" disables the limit."""
    raw = env_str(name) or default
    if raw.lower() in {"off", "none"}:
        return None
    if not re.fullmatch(r"[1-9]\d*/(s|sec|second|m|min|minute|h|hour|d|day)", raw):
        raise ConfigurationError(f"{name}={raw!r} is not a rate like 1200/min (units: s, min, hour, day) or off")
    return raw


REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = [
    "accounts.throttling.UserBurstRateThrottle",
    "accounts.throttling.UserSustainedRateThrottle",
    "accounts.throttling.AnonymousRateThrottle",
    "accounts.throttling.TokenIssueRateThrottle",
]
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
    "user_burst": _env_rate("API_RATE_USER_BURST", "100/s"),
    "user_sustained": _env_rate("API_RATE_USER", "1200/min"),
    "anon": _env_rate("API_RATE_ANON", "60/min"),
    "token_issue": _env_rate("API_RATE_TOKEN_ISSUE", "10/hour"),
}
REST_FRAMEWORK["NUM_PROXIES"] = TRUSTED_PROXY_COUNT or None
