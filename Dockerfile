# The c360 image: the CLI with its Python packages and JVM jars baked in.
# Build: docker build -t c360 .   (the compose file builds it for you)
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless maven procps \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/c360
COPY pyproject.toml README.md ./
COPY c360 c360
COPY lakehouse lakehouse
COPY producers producers
COPY streaming streaming
COPY batch batch
COPY jvm jvm
# Editable install: c360 finds its jvm/ poms and logging config next to the code.
RUN pip install --no-cache-dir -e . && c360 setup

ENV C360_LAKE_STATE_DIR=/opt/c360/.c360
ENTRYPOINT ["c360"]
CMD ["--help"]
