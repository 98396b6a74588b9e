# Portcullis as a container image: `docker build -t portcullis .`
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin portcullis

FROM debian:bookworm-slim
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
# Not root: a compromised Portcullis must not own the container. /data holds the database and
# the signing key (0600); /certs only the certificate the registry needs.
RUN mkdir -p /data /certs && chown 65532:65532 /data /certs
USER 65532:65532
ENV PORTCULLIS_DATA_DIR=/data PORTCULLIS_LISTEN=0.0.0.0:5001 PORTCULLIS_TOKEN__CERTIFICATE_FILE=/certs/token.pem PORTCULLIS_TOKEN__JWKS_FILE=/certs/jwks.json
VOLUME /data /certs
EXPOSE 5001
ENTRYPOINT ["portcullis"]
CMD ["serve"]
