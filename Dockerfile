# syntax=docker/dockerfile:1
# wssproxy: one static binary on an empty image, running as a non-root user.
#
#   docker build -t wssproxy .
#   docker run -p 443:443 wssproxy -route /wss=ws://backend:8282 -acme chat.example.com -acme-accept-tos
#
# Binding 443 as a non-root user works because Docker sets
# net.ipv4.ip_unprivileged_port_start=0 in containers by default. Where that
# is not so (other runtimes, --sysctl changed), either run with
# --sysctl net.ipv4.ip_unprivileged_port_start=443, or build an image whose
# binary has the capability (setcap cap_net_bind_service=+ep /wssproxy) and
# keep --cap-add NET_BIND_SERVICE.
#
# .ci/docker-check reproduces this file's build and runs the result the way
# this image does; a test fails if the two drift apart.

FROM golang:1.27-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/wssproxy ./cmd/wssproxy
# The ACME cache directory, owned by the runtime user: a named volume
# mounted there starts with this ownership, so the non-root process can write.
RUN mkdir -p /out/var/lib/wssproxy/acme

FROM scratch
LABEL org.opencontainers.image.title="wssproxy" \
      org.opencontainers.image.description="TLS front door for WebSocket servers: wss:// in, ws:// out" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/wssproxy/wssproxy"
# CA roots, for ACME and for wss:// backends on other hosts.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/wssproxy /wssproxy
COPY --from=build --chown=65532:65532 /out/var/lib/wssproxy /var/lib/wssproxy
USER 65532:65532
# ACME account and certificates (tls.acme.cache_dir's default), so restarts
# reuse them instead of ordering again: keep it on a named volume.
VOLUME ["/var/lib/wssproxy"]
EXPOSE 443 80
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["/wssproxy", "health"]
ENTRYPOINT ["/wssproxy"]
CMD ["-listen", ":443"]
