# syntax=docker/dockerfile:1
#
# tally: RTMP in (1935), HLS playback (8080), control API and console (8081).
#
#   docker build -t tally .
#   docker run --rm -p 1935:1935 -p 8080:8080 -p 8081:8081 \
#     -e TALLY_CONTROL_LISTEN=0.0.0.0:8081 -e TALLY_CONTROL_TOKEN="$(openssl rand -hex 16)" \
#     -v tally-data:/var/lib/tally/data tally
#
# The control port listens on 127.0.0.1:8081 in config.toml, which inside a container is
# unreachable from the host: set TALLY_CONTROL_LISTEN=0.0.0.0:8081 to publish it, and always a
# real TALLY_CONTROL_TOKEN with it (the file's "change-me" must never face a network). Any other
# key can be overridden the same way (TALLY_* variables, see config.toml), or mount your own file
# over /etc/tally/config.toml. Logging: RUST_LOG (e.g. tally=debug).

FROM rust:1-bookworm AS builder
# nasm lets openh264 (thumbnails) build its SIMD decoder; without it the build falls back to C.
RUN apt-get update \
    && apt-get install -y --no-install-recommends nasm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the release build reads: the manifest and lock file, the sources, the console files
# they embed, and benches/ because Cargo.toml declares [[bench]] targets that must exist.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY console ./console
COPY benches ./benches
# The registry and target caches persist across builds (BuildKit); the binary is copied out of
# the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/tally /out/tally

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed, unprivileged uid; the working directory holds the SQLite store (store.path is
# "data/tally.db", relative to it), so it belongs to that user.
RUN groupadd --system --gid 10001 tally \
    && useradd --system --uid 10001 --gid tally --home-dir /var/lib/tally \
       --shell /usr/sbin/nologin tally \
    && install -d -o tally -g tally -m 0750 /var/lib/tally /var/lib/tally/data
COPY --from=builder /out/tally /usr/local/bin/tally
COPY config.toml /etc/tally/config.toml
USER tally:tally
WORKDIR /var/lib/tally
# 1935 RTMP ingest, 8080 HLS playback, 8081 control (see TALLY_CONTROL_LISTEN above).
EXPOSE 1935 8080 8081
ENTRYPOINT ["tally"]
CMD ["--config", "/etc/tally/config.toml"]
