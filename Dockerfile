# edgeinf-server in a container. Two stages: `build` runs the project's own set-up and build
# (scripts/setup --build-only, scripts/build: no second list of packages), then lists the Debian packages that
# hold the libraries the binaries load; `runtime` installs only those, the binaries, and (with
# MODEL=baked) the model and its memory gate, and runs the server as a non-root user.
#
#   CPU (default):  podman build -t edgeinf .
#   model mounted:  podman build --build-arg MODEL=mounted -t edgeinf .   (mount it at /models)
#   CUDA:           podman build --build-arg BUILD_BASE=nvidia/cuda:13.0.0-devel-ubuntu24.04 \
#                     --build-arg RUNTIME_BASE=nvidia/cuda:13.0.0-runtime-ubuntu24.04 \
#                     --build-arg DEVICE=cuda -t edgeinf:cuda .
# The CUDA target differs only in its bases and the backend it builds and selects.
ARG BUILD_BASE=debian:12
ARG RUNTIME_BASE=debian:12

FROM ${BUILD_BASE} AS build
ARG DEVICE=cpu
ARG MODEL=baked
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . .
RUN scripts/setup --build-only \
 && scripts/build -DBUILD_TESTING=OFF -DEDGEINF_CUDA="$([ "$DEVICE" = cuda ] && echo ON || echo OFF)" \
 && mkdir -p /out/bin /out/models \
 && cp build/server/edgeinf-server build/server/edgeinf-client build/engine/edgeinf /out/bin/ \
 && strip --strip-unneeded /out/bin/* \
 && if [ "$MODEL" = baked ]; then cp models/SmolLM2-135M-Instruct.Q4_1.gguf models/SmolLM2-135M-Instruct.Q4_1.gate.gguf /out/models/; fi \
 && for b in /out/bin/*; do ldd "$b"; done | awk '/=> \//{print $3}' | sort -u \
    | while read -r lib; do dpkg -S "$lib" 2>/dev/null || dpkg -S "/usr$lib" 2>/dev/null || dpkg -S "${lib#/usr}" 2>/dev/null \
      || true; done \
    | cut -d: -f1 | sort -u > /out/runtime-packages \
 && echo "runtime packages: $(tr '\n' ' ' < /out/runtime-packages)"

FROM ${RUNTIME_BASE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=build /out/runtime-packages /usr/share/edgeinf/runtime-packages
# hadolint ignore=DL3008,SC2046
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(cat /usr/share/edgeinf/runtime-packages) \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --create-home edgeinf
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build /out/models/ /models/
USER 10001
WORKDIR /data
VOLUME ["/data"]
# gRPC (edgeinfinite.v1.Inference, grpc.health.v1) and Prometheus /metrics.
EXPOSE 50051 9464
# The server is PID 1 and drains on SIGTERM (--shutdown_grace_s); extra arguments are flags.
ENTRYPOINT ["/usr/local/bin/edgeinf-server", "--listen=0.0.0.0:50051", "--metrics_listen=0.0.0.0:9464", \
            "--model=/models/SmolLM2-135M-Instruct.Q4_1.gguf", "--store=dir:///data/sessions"]
