"""Prefect flows that orchestrate the DVC stages. Orchestration only: no ML logic lives here."""
