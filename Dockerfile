# xclip-cli in a container, without torch at run time.
#
#   docker build -t xclip-cli .                                  # microsoft/xclip-base-patch32
#   docker build -t xclip-cli --build-arg MODEL=microsoft/xclip-base-patch16-zero-shot .
#   docker run --rm -v "$PWD:/data" xclip-cli classify /data/match.mp4 --labels kinetics400
#
# The build stage installs everything (torch's CPU build included), downloads the checkpoint and
# prepares it for ONNX Runtime; the final stage holds only the runtime install (`pip install` of
# the wheel: ONNX Runtime, tokenizers, PyAV, Pillow, numpy...) and the prepared folder.
# tests/test_runtime.py runs these same steps (wheel, runtime venv, models prepare --output) in CI.
ARG PYTHON=3.11

FROM python:${PYTHON}-slim AS build
ARG MODEL=microsoft/xclip-base-patch32
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir '.[torch]' \
 && pip wheel --no-cache-dir --no-deps -w /wheels .
RUN xclip models prepare --model "$MODEL" --output /opt/xclip/model

FROM python:${PYTHON}-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/xclip_cli-*.whl && rm -rf /wheels
COPY --from=build /opt/xclip/model /opt/xclip/model
# --model defaults to the prepared folder; the text-feature cache goes to a writable place
# (mount a volume there to keep it between runs).
ENV XCLIP_MODEL=/opt/xclip/model XCLIP_CACHE_DIR=/var/cache/xclip
RUN mkdir -p /var/cache/xclip && chmod 1777 /var/cache/xclip
ENTRYPOINT ["xclip"]
CMD ["--help"]
