# The README's `make run` in a container: `docker run -p 8501:8501 -v audit:/app/data IMAGE` serves the
# dashboard (on all interfaces inside the container) with the background sync. The tests run outside it.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 app
WORKDIR /app
COPY requirements.txt ./
RUN python -m venv .venv && .venv/bin/pip install --no-cache-dir -r requirements.txt && touch .venv/.runtime
COPY . .
RUN mkdir -p data && chown -R app:app /app
USER app
# All interfaces inside the container; only the host names in STREAMLIT_SERVER_ALLOWED_HOSTS (space-separated) are
# answered, so a page on another name that resolves here (DNS rebinding) is refused. Add yours with `-e`.
# Listening beyond loopback, the dashboard serves no data until people sign in (DASHBOARD_CLIENT_ID and the rest)
# or an authenticating proxy in front names them (DASHBOARD_PROXY_HEADER): see the README.
ENV AUDIT_STORE=sqlite:////app/data/audit.db \
    STREAMLIT_SERVER_ADDRESS=0.0.0.0 \
    STREAMLIT_SERVER_ALLOWED_HOSTS="localhost 127.0.0.1 ::1"
VOLUME ["/app/data"]
EXPOSE 8501
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health')"
CMD ["make", "run", "-o", ".venv/.runtime"]
