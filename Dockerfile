# r3v worker image: the library, flows and tasks, serving deployment r3v/iterate.
# For GPU hosts, build FROM a CUDA PyTorch image and set TORCH_SPEC accordingly.
FROM python:3.11-slim
ARG TORCH_SPEC="torch==2.13.0"
# the same Prefect as the server image (docker-compose.yml: R3V_PREFECT_VERSION)
ARG PREFECT_VERSION=3.8.8
ENV PIP_NO_CACHE_DIR=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
WORKDIR /app
COPY pyproject.toml README.md ./
COPY r3v ./r3v
COPY flows ./flows
COPY tasks ./tasks
COPY configs ./configs
# a regular (non-editable) install: the SQL views are package data (tests/test_wheel.py checks a wheel)
RUN pip install "${TORCH_SPEC}" && pip install . "prefect==${PREFECT_VERSION}"
CMD ["r3v", "serve"]
