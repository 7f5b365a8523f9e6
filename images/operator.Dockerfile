# The kubetune operator: the control plane only (no torch), non-root, read-only root FS friendly.
# Build from the repository root: docker build -f images/operator.Dockerfile -t kubetune/operator .
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY images/kubetune_workloads ./images/kubetune_workloads
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --uid 1000 --create-home --shell /usr/sbin/nologin kubetune
USER 1000:1000
EXPOSE 8080 8081
ENTRYPOINT ["kubetune", "operator"]
