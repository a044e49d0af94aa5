"""The HTTP API: a thin FastAPI shell (routes, deps) around a pure analytics core (api.core)."""
