# Session Gateway: slim, non-root, with a health check. Its configuration (conf/container.toml) listens on
# 0.0.0.0:8080 and takes the app's upstream, the Okta org and the secrets from the environment (README: Docker).
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY plugins ./plugins
# The gateway alone: the [sandbox] extra (a stand-in Okta org for the demo and the tests) stays out of the image,
# and `session-gateway demo` says so in one line. A numeric user, so that Kubernetes' runAsNonRoot can check it.
RUN pip install --no-compile . \
    && groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin gateway
COPY conf/container.toml /etc/session-gateway/gateway.toml

USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/.gateway/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["session-gateway"]
CMD ["run", "--config", "/etc/session-gateway/gateway.toml"]
