# One image for web, worker and beat (see compose.yaml); the command picks the role.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CYCLECOUNT_VAR_DIR=/app/var

WORKDIR /app
RUN useradd --system --create-home --uid 1000 cyclecount

COPY pyproject.toml requirements.lock README.md ./
RUN pip install -c requirements.lock -e .

COPY . .
RUN mkdir -p var && DEBUG=1 python manage.py collectstatic --noinput -v0 \
    && rm -f var/secret_key && chown -R cyclecount:cyclecount /app/var

USER cyclecount
EXPOSE 8000
# Workers and threads: config/gunicorn.conf.py (WEB_CONCURRENCY, WEB_THREADS).
CMD ["gunicorn", "--config", "config/gunicorn.conf.py", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
