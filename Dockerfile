# posts-api image: `docker build -t posts-api .`, then see README ("Container and Kubernetes").
# Two stages: `build` resolves the locked dependencies into /app/.venv with uv; the runtime stage
# copies only that virtual environment (no uv, no build tools, no caches) and runs as a non-root
# user. The project is installed into the venv as a regular (non-editable) wheel, so /app/src is
# not needed at run time.

FROM python:3.11-slim AS build

# Pinned like the Makefile's UV_VERSION (tests/deploy checks they agree).
ARG UV_VERSION=0.13.8
# An index mirror or proxy for pip and uv may be passed at build time only (--build-arg); these
# live in the build stage, which is not shipped.
ARG PIP_INDEX_URL
ARG UV_DEFAULT_INDEX
ARG UV_INDEX_URL

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NATIVE_TLS=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_NO_CACHE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/uv && /opt/uv/bin/pip install --quiet "uv==${UV_VERSION}"

WORKDIR /app
# Dependencies first, in their own layer: it is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-install-project --python python3
COPY src ./src
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-editable --python python3


FROM python:3.11-slim

# A fixed numeric id, so Kubernetes' runAsNonRoot can check it without a passwd lookup.
ARG UID=10001
RUN groupadd --system --gid "${UID}" posts \
    && useradd --system --uid "${UID}" --gid posts --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin posts \
    && mkdir -p /app/data \
    && chown posts:posts /app/data

WORKDIR /app
COPY --from=build /app/.venv /app/.venv

# /app/data holds the SQLite database and the generated signing key when DATABASE_URL and
# SECRET_KEY are not set: mount a volume there to keep them.
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTHCHECK_PORT=8000

USER posts:posts
EXPOSE 8000

# /livez does no I/O: it says the process answers. Readiness (/readyz) is for load balancers and
# Kubernetes, not for this check. Serving on another port? Set HEALTHCHECK_PORT to it as well.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('HEALTHCHECK_PORT', '8000'), timeout=2)"]

# Exec form, no shell in between: SIGTERM from `docker stop` or Kubernetes reaches `serve`, which
# drains and exits 0.
ENTRYPOINT ["posts-api"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
