"""Routers, one per resource, each with its path prefix; their bodies are in api/schemas.py."""
