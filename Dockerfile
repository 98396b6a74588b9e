# Portcullis as a container image: `docker build -t portcullis .`
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin portcullis

FROM debian:bookworm-slim
COPY --from=build /src/target/release/portcullis /usr/local/bin/portcullis
ENV PORTCULLIS_DATA_DIR=/data PORTCULLIS_LISTEN=0.0.0.0:5001
VOLUME /data
EXPOSE 5001
ENTRYPOINT ["portcullis"]
CMD ["serve"]
