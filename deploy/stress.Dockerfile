# The memory hog, as a static binary on an empty base.
# Build from the repository root: docker build -f deploy/stress.Dockerfile -t oom-tracer/stress:dev .
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
RUN cargo build --release --package stress --target x86_64-unknown-linux-musl

FROM scratch
COPY --from=build /src/target/x86_64-unknown-linux-musl/release/stress /stress
USER 65534:65534
ENTRYPOINT ["/stress"]
