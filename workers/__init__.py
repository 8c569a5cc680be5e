"""Workers: the Celery app on Redis and the embedded in-process pool, both thin wrappers around
one function (workers.pipeline.process) that verifies a stored attempt with toolchain.verify."""
