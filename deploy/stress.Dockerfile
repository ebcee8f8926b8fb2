# The memory hog's image: one static binary (`stress`, musl) on an empty
# base. No shell, no libc, nothing else.
#
# Built like the agent's image (see agent.Dockerfile): `cargo xtask images`
# builds the binary on the host, stages target/images/stress/ (this
# Dockerfile and the binary) and writes target/images/stress.tar. By hand,
# after `cargo xtask images`:
#   docker build -t oom-tracer/stress:dev target/images/stress
FROM scratch
COPY stress /stress
# nobody:nogroup, as deploy/oom-example-pod.yaml runs it (runAsUser 65534,
# runAsNonRoot).
USER 65534:65534
ENTRYPOINT ["/stress"]
