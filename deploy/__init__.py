"""Deployment: the container entry points (entrypoints.py), the image build steps (image.sh),
the pinned Python dependencies (requirements.lock, lock.py) and the worker measurement used for
sizing (measure.py). docker-compose.yml and k8s/ run nothing that is not in entrypoints.py."""
