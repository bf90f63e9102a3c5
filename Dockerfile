# syntax=docker/dockerfile:1
# authgress container image: a static binary on distroless, non-root (65532:65532), no shell.
#   docker build -t authgress .
#   docker run --rm -p 3128:3128 -p 127.0.0.1:9464:9464 -e AUTHGRESS_PROXY_PASSWORD \
#     -v "$PWD/deploy/docker/authgress.toml:/etc/authgress/authgress.toml:ro" \
#     -v "$PWD/oauth-clients.toml:/run/secrets/oauth-clients.toml:ro" authgress
# The config decides the listen address. Inside a container, 127.0.0.1 is the container's own
# loopback, unreachable through -p, so a published proxy needs listen = "0.0.0.0:3128" (as
# deploy/docker/authgress.toml has). A non-loopback listener is reachable by anyone who can reach
# the port: give it [server.auth] users, or restrict who can connect (network policy, firewall).
# In a Kubernetes sidecar the app shares the pod's loopback: listen = "127.0.0.1:3128" is right
# there (deploy/kubernetes/). Mounted files must be readable by uid 65532.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/authgress ./cmd/authgress

# distroless/static: CA certificates, /etc/passwd with "nonroot" (65532), no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/authgress /usr/local/bin/authgress
# Numeric, so that Kubernetes runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
EXPOSE 3128 9464
ENTRYPOINT ["/usr/local/bin/authgress"]
CMD ["run", "--config", "/etc/authgress/authgress.toml"]
