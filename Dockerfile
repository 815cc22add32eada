# The `strata` binary in a small image: scheduler, executor and CLI in one.
#   docker build -t strata:dev .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p strata --bin strata \
    && objcopy --only-keep-debug target/release/strata /strata.debug \
    && objcopy --strip-all --add-gnu-debuglink=/strata.debug target/release/strata /strata
# The image ships the binary without its symbols (150 MB instead of 183 MB); they stay
# here, in /strata.debug (`docker build --target build`), to read a backtrace with.

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --create-home strata
COPY --from=build /strata /usr/local/bin/strata
# The example pipeline, for the dev overlay's schedule (k8s/overlays/dev/schedules.toml).
COPY examples/recruitment /opt/strata/pipelines/recruitment
USER 10001
EXPOSE 50050 50051 50052 50053 8080 8088 9090
ENTRYPOINT ["/usr/local/bin/strata"]
