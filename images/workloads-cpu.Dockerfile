# CPU workload image: dataprep, feedback (and small CPU fine-tuning/evaluation). Runs
# `python -m kubetune_workloads <step> --spec FILE` as uid 1000 with a read-only root FS;
# /tmp and the cache are emptyDirs mounted by the operator.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY images/kubetune_workloads ./images/kubetune_workloads
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HOME=/var/cache/kubetune/hf \
    KUBETUNE_CACHE=/var/cache/kubetune
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
    && pip install --no-cache-dir "$(ls /wheels/*.whl)[train]" && rm -rf /wheels \
    && useradd --uid 1000 --create-home --shell /usr/sbin/nologin kubetune \
    && mkdir -p /var/cache/kubetune && chown 1000:1000 /var/cache/kubetune
USER 1000:1000
ENTRYPOINT ["python", "-m", "kubetune_workloads"]
