"""Routers, each with its request and response schemas beside it."""
