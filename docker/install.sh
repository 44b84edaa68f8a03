#!/bin/sh
# Shared install step of both images: a virtualenv with the project wheel, the non-root
# user, the model cache volume and, when asked, a model baked into the image.
#   webrtc-stt-install EXTRAS MODEL
set -eu
extras="$1"
model="$2"

python3 -m venv "$VIRTUAL_ENV"
# silero-vad declares torch although we only use its ONNX file: this pin is the small CPU
# wheel (an unpinned torch pulls gigabytes of CUDA packages); GPU work runs in CTranslate2.
pip install torch==2.13.0
wheel=$(ls /wheels/webrtc_stt-*.whl)
if [ -n "$extras" ]; then
    pip install "${wheel}[${extras}]"
else
    pip install "$wheel"
fi
rm -rf /wheels

useradd --system --uid 10001 --home-dir /models --shell /usr/sbin/nologin stt
mkdir -p /models /etc/webrtc-stt /opt/models
chown stt:stt /models

config=/etc/webrtc-stt/server.toml
echo "# Settings baked into the image (env WEBRTC_STT_* and flags override them)." > "$config"
if [ -n "$model" ]; then
    target="/opt/models/$(basename "$model")"
    python3 -c 'import sys; from faster_whisper import download_model; download_model(sys.argv[1], output_dir=sys.argv[2])' "$model" "$target"
    echo "model = \"$target\"" >> "$config"
fi
# Fail the build, not the first start, on a broken install or a tampered model package.
webrtc-stt config > /dev/null
python3 -c 'from webrtc_stt.engine.models import resolve; from webrtc_stt.vad import default_model_path; resolve("tiny.en"); default_model_path()'
