# The image of deploy/deployment.yaml: the demo web app (demo/app.py) with
# lameduck as its entrypoint. Build from the repository root:
#
#   docker build -t lameduck:0.1.0 .
#   docker build -f deploy/example-app.Dockerfile -t lameduck-demo:0.1.0 .

ARG LAMEDUCK_IMAGE=lameduck:0.1.0
FROM ${LAMEDUCK_IMAGE} AS lameduck

FROM python:3.13-slim-bookworm
COPY --from=lameduck /lameduck /usr/local/bin/lameduck
COPY demo/app.py /app/app.py
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65534:65534
EXPOSE 8080 9911
ENTRYPOINT ["/usr/local/bin/lameduck", "run", "--"]
CMD ["python3", "/app/app.py", "8080"]
