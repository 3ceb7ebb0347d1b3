# The CSMS with its embedded PostgreSQL (or set DATABASE_URL to use your own server).
# The demo too: docker run -p 8080:8080 ocpp-csms csms demo --host 0.0.0.0 --data-dir /app/data/demo
FROM python:3.11-slim

RUN useradd --create-home --uid 1000 csms
WORKDIR /app
COPY pyproject.toml README.md ./
COPY csms ./csms
COPY smart_charging ./smart_charging
COPY simulators ./simulators
COPY demo ./demo
COPY config ./config
RUN pip install --no-cache-dir . && chown -R csms /app

USER csms
# OCPP WebSocket; HTTP API and dashboard
EXPOSE 9000 8080
VOLUME ["/app/data"]
CMD ["csms", "serve", "--host", "0.0.0.0", "--port", "9000", "--data-dir", "/app/data/postgres"]
