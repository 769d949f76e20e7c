# The project image: what a Prefect worker needs to run the pipeline (DVC stages, MLflow client, PyTorch).
# CPU by default; for the GPU worker build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
# torch first, from its own index: the lock's other pins then find it installed
RUN pip install --no-cache-dir "torch==2.13.0" --index-url "$TORCH_INDEX" \
 && pip install --no-cache-dir -r requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps -e . \
 && git config --global --add safe.directory '*' \
 && (git rev-parse --git-dir >/dev/null 2>&1 || (git init -q && git add -A && git -c user.email=ci@variantlab -c user.name=variantlab commit -qm image))
ENV DVC_NO_ANALYTICS=1 DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false PYTHONUNBUFFERED=1
CMD ["variantlab", "--help"]
