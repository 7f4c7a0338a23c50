# One image for sml's code-location server, Dagster's webserver and daemon (docker-compose.yml).
FROM python:3.11-slim-bookworm

ARG DEBIAN_FRONTEND=noninteractive
# Java 17 for Spark, Maven to fetch Spark's Kafka connector, Microsoft's ODBC driver for SQL Server.
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless maven curl gnupg ca-certificates unixodbc \
 && curl -fsSL https://packages.microsoft.com/keys/microsoft.asc | gpg --dearmor -o /usr/share/keyrings/microsoft.gpg \
 && echo "deb [signed-by=/usr/share/keyrings/microsoft.gpg] https://packages.microsoft.com/debian/12/prod bookworm main" \
      > /etc/apt/sources.list.d/mssql-release.list \
 && apt-get update && ACCEPT_EULA=Y apt-get install -y --no-install-recommends msodbcsql18 \
 && rm -rf /var/lib/apt/lists/*

ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    SML_DATA_DIR=/opt/sml/data \
    DAGSTER_HOME=/opt/sml/dagster-home
WORKDIR /opt/sml/app

COPY pyproject.toml README.md ./
COPY sml_assets ./sml_assets
COPY simulator ./simulator
COPY devstack ./devstack
COPY docker ./docker
RUN pip install --no-cache-dir -e . \
 && python3 devstack/stack.py up spark_kafka \
 && mkdir -p "$DAGSTER_HOME" && cp docker/dagster.yaml "$DAGSTER_HOME/dagster.yaml"

EXPOSE 3000 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "sml_assets.definitions", "--location-name", "sml_assets"]
