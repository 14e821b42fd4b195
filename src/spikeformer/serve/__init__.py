"""The inference service (FastAPI) and the batch worker; they use the library only through its public functions."""
