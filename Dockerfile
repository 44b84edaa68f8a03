# GPU image: faster-whisper on CUDA 12 + cuDNN 9 (what CTranslate2 4.x needs).
#   docker build -t webrtc-stt .
#   docker run --gpus all --network host webrtc-stt serve --host 0.0.0.0 \
#       --model large-v3-turbo --allow-download --ice-host <public-ip> --udp-ports 40000-40100
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# silero-vad declares torch although we only use its ONNX file: take the small CPU wheel,
# the engine's GPU work runs in CTranslate2.
RUN python3 -m pip install torch --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY webrtc_stt ./webrtc_stt
COPY signaling ./signaling
COPY client ./client
RUN python3 -m pip install .

EXPOSE 8080
ENTRYPOINT ["webrtc-stt"]
CMD ["serve", "--host", "0.0.0.0", "--device", "auto"]
