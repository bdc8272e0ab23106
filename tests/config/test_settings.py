"""Bad configuration stops start-up with one clear line naming the variable."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "DEBUG", "SECRET_KEY"}}
    clean.update({"CYCLECOUNT_VAR_DIR": str(tmp_path), **env})
    return subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DATABASE_URL", "mysql-ish://nowhere"),
        ("DATABASE_URL", "postgres://localhost:5432/"),
        ("DATABASE_URL", "not a url"),
        ("CELERY_BROKER_URL", "carrier-pigeon://loft"),
        ("REDIS_URL", "http://localhost:6379"),
        ("DEBUG", "maybe"),
        ("SECRET_KEY", "short"),
    ],
)
def test_bad_variable_stops_start_up_with_one_line_naming_it(tmp_path, variable, value):
    result = _manage(tmp_path, "check", **{variable: value})

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cyclecount: configuration error: ")
    assert variable in lines[0]


def test_production_environment_passes_the_deploy_check(tmp_path):
    result = _manage(
        tmp_path,
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="cyclecount.example.com",
        SECURE_SSL_REDIRECT="1",
    )

    assert result.returncode == 0, result.stderr + result.stdout


def test_without_secret_key_an_install_gets_its_own_random_key(tmp_path):
    first = _manage(tmp_path, "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)")
    second = _manage(tmp_path, "shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)")

    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert len(first.stdout.strip()) >= 50
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"
