# The dagflow image: one image for `dagflow worker`, `dagflow serve` and `dagflow db upgrade`.
#
#   docker build -t dagflow .
#   docker run --rm dagflow worker --address temporal.internal:7233
#
# temporal-dev.yml builds it for the worker and the starter; docs/operating.md has the settings.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the wheel is built from: pyproject.toml, the README it names, the four packages.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY workflows/ workflows/
COPY activities/ activities/
COPY worker/ worker/
COPY starter/ starter/
RUN pip install . && rm -rf /src

RUN useradd --uid 10001 --user-group --create-home --shell /usr/sbin/nologin dagflow
USER dagflow
WORKDIR /home/dagflow

# `dagflow serve` listens on DAGFLOW_PORT (default 8080); set DAGFLOW_HOST=0.0.0.0 to reach it.
EXPOSE 8080
ENTRYPOINT ["dagflow"]
CMD ["--help"]
