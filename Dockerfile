# The Daily Papers digest daemon. Build: docker build -t daily-papers-digest .
# Run:   docker run -v digest-data:/data -v ./subscribers.yaml:/config/subscribers.yaml:ro \
#          -e DIGEST_SMTP_HOST=smtp.example.org daily-papers-digest

# Stage 1: install the package and its dependencies into a virtual environment.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY digest ./digest
COPY templates ./templates
RUN python -m venv /opt/digest \
    && /opt/digest/bin/pip install --no-cache-dir . \
    && /opt/digest/bin/pip uninstall --yes pip setuptools

# Stage 2: the environment alone, without the sources, wheels or pip's cache.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --create-home digest \
    && mkdir -p /data /config \
    && chown digest:digest /data
COPY --from=build /opt/digest /opt/digest

USER digest
ENV PATH=/opt/digest/bin:$PATH \
    DIGEST_CONFIG=/config/subscribers.yaml \
    DIGEST_DATA_DIR=/data \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
VOLUME /data

# Fails when the scheduler stopped beating or the latest scheduled run is overdue.
HEALTHCHECK --interval=60s --timeout=15s --start-period=60s --retries=3 \
    CMD ["digest", "--quiet", "health"]

# The daemon is PID 1 and handles SIGTERM itself, so `docker stop` needs no kill.
STOPSIGNAL SIGTERM
ENTRYPOINT ["digest"]
CMD ["run"]
