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

COPY pyproject.toml README.md ./
COPY hpstudy ./hpstudy
COPY studies ./studies
RUN pip install -e '.[postgres]' && hpstudy --version

# results (MLflow store, artifacts, Optuna studies) and datasets live outside the image
VOLUME ["/app/mlruns", "/data"]
EXPOSE 5001
ENTRYPOINT ["hpstudy"]
CMD ["--help"]
