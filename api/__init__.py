"""The farm's HTTP API (FastAPI): thin routes over toolchain (tasks, baselines), store (attempts,
history) and workers (dispatch). `uvicorn --factory api.app:create_app`."""
