# Portcullis, for those who build with Docker or BuildKit:
#   docker build --build-arg REVISION=$(git rev-parse HEAD) -t portcullis:dev .
# `make image` builds the same image without a container daemon (an OCI
# layout in target/image): the release binary, the C libraries it links, CA
# certificates, and the non-root user 65532. It runs with a read-only root
# filesystem; /tmp is the only place it may write (an emptyDir in the chart
# and manifests).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin portcullis

# glibc, libgcc, CA certificates and a nonroot user (65532), nothing else:
# no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG REVISION=unknown
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="portcullis" \
      org.opencontainers.image.description="Kubernetes validating admission webhook that gates images on signed scan and test attestations" \
      org.opencontainers.image.source="https://github.com/portcullis-dev/portcullis" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/portcullis"]
CMD ["serve", "--listen", "0.0.0.0:8443"]
