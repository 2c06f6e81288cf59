# One image for every tacoord service; docker-compose.yml picks the service
# with `command: ["python", "-m", "services.run", "<name>"]`.
#   docker build -t tacoord .
#   docker run --rm tacoord python -m services.run needs   # needs AMQP_URI / MONGO_URI
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TACOORD_OPS_HOST=0.0.0.0 \
    TACOORD_HTTP_HOST=0.0.0.0 \
    TACOORD_STATE_DIR=/tmp/tacoord

WORKDIR /app
# Dependencies first (pinned in pyproject.toml), so code edits reuse this layer.
COPY pyproject.toml README.md ./
RUN mkdir -p tacoord services infra \
    && touch tacoord/__init__.py services/__init__.py infra/__init__.py \
    && pip install . \
    && pip uninstall -y tacoord \
    && rm -rf tacoord services infra build *.egg-info
COPY tacoord ./tacoord
COPY services ./services
COPY infra ./infra
RUN pip install --no-deps . && rm -rf build *.egg-info \
    && useradd --system --uid 10001 --no-create-home tacoord
USER tacoord

# HTTP 8001-8006, metrics and health 9101-9106 (one pair per service).
EXPOSE 8001-8006 9101-9106
CMD ["python", "-m", "services.run", "needs"]
