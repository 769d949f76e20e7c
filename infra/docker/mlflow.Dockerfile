# The MLflow tracking server of the team stack: PostgreSQL driver, S3 client, basic-auth app. Pins from requirements.lock.
FROM python:3.11-slim
RUN pip install --no-cache-dir "mlflow==3.17.2" "psycopg2-binary==2.9.13" "boto3==1.43.117" "Flask-WTF==1.3.0"
USER nobody
WORKDIR /tmp
EXPOSE 5000
