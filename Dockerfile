# syntax=docker/dockerfile:1
# wssproxy: one static binary on an empty image, running as a non-root user.
#
#   docker build -t wssproxy .
#   docker run -d -p 443:443 -p 80:80 -v wssproxy-acme:/var/lib/wssproxy wssproxy \
#     -route /wss=ws://backend:8282 -acme chat.example.com -acme-email ops@example.com -acme-accept-tos
#
# Multi-platform, with the release's version in -version:
#
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=v0.1.0 -t wssproxy .
#
# Flags after the image name add to the image's defaults, which live in
# ENV (an argument would replace a CMD): TLS on :443 (WSSPROXY_LISTEN) and
# a plain-HTTP listener on :80 (WSSPROXY_REDIRECT) that answers ACME's
# HTTP-01 challenges and redirects everything else to https. Like every
# WSSPROXY_ variable they act as flags: with a configuration file whose
# listen or [redirect] listen should count, clear them (-e WSSPROXY_LISTEN=).
#
# Binding 443 and 80 as a non-root user works because Docker sets
# net.ipv4.ip_unprivileged_port_start=0 in containers by default. Where that
# is not so (other runtimes, --sysctl changed), either run with
# --sysctl net.ipv4.ip_unprivileged_port_start=80, or build an image whose
# binary has the capability (setcap cap_net_bind_service=+ep /wssproxy) and
# keep --cap-add NET_BIND_SERVICE.
#
# .ci/docker-check reproduces this file's build and runs every documented
# `docker run` of the image the way Docker composes it; a test fails if the
# two drift apart.

# The build image: the exact Go that go.mod asks for (a floating
# golang:1.27 tag may hold an older 1.27.x, which GOTOOLCHAIN=local, the
# image's setting, refuses). It is pinned by tag only: its digest could not
# be looked up where this file was written. Pin it by digest where you
# build: docker buildx imagetools inspect golang:1.27.3-bookworm, then
# FROM golang:1.27.3-bookworm@sha256:<index digest>. It runs on the
# builder's platform and cross-compiles for the target's.
FROM --platform=$BUILDPLATFORM golang:1.27.3-bookworm AS build
# go.mod's toolchain, fetched only if the image's Go were another.
ENV GOTOOLCHAIN=go1.27.3
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS TARGETARCH VERSION
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -ldflags="-s -w -X main.releaseVersion=$VERSION" -o /out/wssproxy ./cmd/wssproxy
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
# The defaults that flags after the image name add to (see above).
ENV WSSPROXY_LISTEN=:443
ENV WSSPROXY_REDIRECT=:80
# ACME account and certificates (tls.acme.cache_dir's default), so restarts
# reuse them instead of ordering again: keep it on a named volume.
VOLUME ["/var/lib/wssproxy"]
EXPOSE 443 80
# Unhealthy, too, when the listeners are not where WSSPROXY_LISTEN and
# WSSPROXY_REDIRECT say: a -listen that moved TLS off the published port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["/wssproxy", "health", "-env-listeners"]
ENTRYPOINT ["/wssproxy"]
