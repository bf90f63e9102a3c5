# syntax=docker/dockerfile:1
# authgress container image: a static binary on distroless, non-root, no shell.
#   docker build -t authgress .
#   docker run --rm -v "$PWD/authgress.toml:/etc/authgress/authgress.toml:ro" -p 3128:3128 authgress
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
USER nonroot:nonroot
EXPOSE 3128 9464
ENTRYPOINT ["/usr/local/bin/authgress"]
CMD ["run", "--config", "/etc/authgress/authgress.toml"]
