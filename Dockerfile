# syntax=docker/dockerfile:1
# wssproxy: one static binary on an empty image, running as a non-root user.
#
#   docker build -t wssproxy .
#   docker run -p 443:443 -v /etc/letsencrypt:/etc/letsencrypt:ro \
#     -v $PWD/wssproxy.toml:/etc/wssproxy/wssproxy.toml:ro \
#     wssproxy -config /etc/wssproxy/wssproxy.toml
#
# Binding 443 as a non-root user works because Docker sets
# net.ipv4.ip_unprivileged_port_start=0 in containers by default.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The same flags .ci/run builds and checks with.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/wssproxy ./cmd/wssproxy
# The ACME cache directory, owned by the runtime user: a named volume
# mounted there starts with this ownership, so the non-root process can write.
RUN mkdir -p /out/var/lib/wssproxy/acme

FROM scratch
# CA roots, for wss:// backends on other hosts.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/wssproxy /wssproxy
COPY --from=build --chown=65532:65532 /out/var/lib/wssproxy /var/lib/wssproxy
USER 65532:65532
# ACME account and certificates (tls.acme.cache_dir's default), so restarts
# reuse them instead of ordering again: keep it on a named volume.
VOLUME ["/var/lib/wssproxy"]
EXPOSE 443 80
ENTRYPOINT ["/wssproxy"]
CMD ["-listen", ":443"]
