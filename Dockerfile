# hpstudy on a CUDA-capable PyTorch image: run studies on the GPU, serve the champion.
#   docker build -t hpstudy .
#   docker run --gpus all -v "$PWD/mlruns:/app/mlruns" -v /path/to/data:/data hpstudy optimize --study cnn_cifar
#   docker run -p 127.0.0.1:5001:5001 -v "$PWD/mlruns:/app/mlruns" hpstudy serve --study cnn_cifar --host 0.0.0.0
# Any PyTorch >= 2.4 image with CUDA works as the base (its torch and torchvision are kept).
ARG BASE=pytorch/pytorch:2.7.0-cuda12.8-cudnn9-runtime
FROM ${BASE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HPSTUDY_DATA_DIR=/data
WORKDIR /app

# installed as a package (not editable, studies inside it), then the source is removed
COPY pyproject.toml README.md LICENSE /tmp/src/
COPY hpstudy /tmp/src/hpstudy
COPY studies /tmp/src/studies
RUN pip install '/tmp/src[postgres]' && rm -rf /tmp/src && hpstudy --version \
    && useradd --create-home --uid 1000 hpstudy \
    && mkdir -p /app/mlruns /data /mlartifacts \
    && chown hpstudy:hpstudy /app /app/mlruns /data /mlartifacts  # compose.yaml: mlartifacts
USER hpstudy

# results (MLflow store, artifacts, Optuna studies) and datasets live outside the image
VOLUME ["/app/mlruns", "/data"]
EXPOSE 5001
ENTRYPOINT ["hpstudy"]
CMD ["--help"]
