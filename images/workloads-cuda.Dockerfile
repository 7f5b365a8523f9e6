# CUDA workload image: finetune, compress and evaluate on NVIDIA GPUs (bitsandbytes, torchrun).
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY images/kubetune_workloads ./images/kubetune_workloads
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HF_HOME=/var/cache/kubetune/hf KUBETUNE_CACHE=/var/cache/kubetune \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/venv
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cu128 torch==2.13.0 \
    && pip install --no-cache-dir "$(ls /wheels/*.whl)[train]" && rm -rf /wheels \
    && (id -u 1000 >/dev/null 2>&1 || useradd --uid 1000 --create-home --shell /usr/sbin/nologin kubetune) \
    && mkdir -p /var/cache/kubetune && chown 1000:1000 /var/cache/kubetune
USER 1000:1000
ENTRYPOINT ["python", "-m", "kubetune_workloads"]
