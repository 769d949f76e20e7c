-- One PostgreSQL for the team stack: MLflow's tracking store and registry, MLflow's users (basic auth), Prefect, the
-- Optuna studies that search workers share, the model server's prediction log and feedback.
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
CREATE DATABASE prefect;
CREATE DATABASE optuna;
CREATE DATABASE serving;
