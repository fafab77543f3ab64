# Session Gateway: slim, non-root, with a health check.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY plugins ./plugins
COPY conf/gateway.example.toml /etc/session-gateway/gateway.toml
RUN pip install --no-compile . \
    && useradd --system --uid 10001 --no-create-home gateway

USER gateway
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/.gateway/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["session-gateway"]
# Mount your own configuration over /etc/session-gateway/gateway.toml (listen = "0.0.0.0:8080" in a container).
CMD ["run", "--config", "/etc/session-gateway/gateway.toml"]
