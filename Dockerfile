# One image for everything in docker-compose.yml: the bot replicas (`briefbot run`) and the worker
# (`briefbot worker`). Build: docker build -t briefbot .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

WORKDIR /opt/briefbot

# The CPU build of torch first, exactly as scripts/install.sh does: otherwise pip pulls a multi-GB CUDA build
# for sentence-transformers. Override with --build-arg TORCH_SPEC=torch==2.x.y to pin it.
ARG TORCH_SPEC=torch
RUN pip install --index-url https://download.pytorch.org/whl/cpu "${TORCH_SPEC}"

# Then the project (its dependencies include the PostgreSQL driver and Alembic).
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY index ./index
COPY handlers ./handlers
RUN pip install .

# Export the ONNX encoder once, into the image, so no container does it at start-up (or races another).
ENV BRIEFBOT_MODELS_DIR=/opt/briefbot/models
RUN python -c "from pathlib import Path; from index.embeddings import make_encoder; \
make_encoder('auto', cache_dir=Path('/opt/briefbot/models'))"

RUN useradd --system --create-home --home-dir /home/briefbot briefbot \
    && mkdir -p /data /inbox && chown briefbot:briefbot /data /inbox
USER briefbot
ENV BRIEFBOT_DATA_DIR=/data
VOLUME ["/data"]
# 8443: the Telegram webhook (WEBHOOK_PORT); 9464: /healthz and /metrics (BRIEFBOT_OPS_PORT).
EXPOSE 8443 9464
ENTRYPOINT ["briefbot"]
CMD ["run"]
