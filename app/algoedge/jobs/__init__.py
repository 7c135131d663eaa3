"""Background jobs: the Celery app, its tasks (reports, e-mail, notifications), beat and probes.

Importing this package imports nothing heavy; ``algoedge.jobs.celery_app`` builds the Celery
application, ``algoedge.jobs.tasks`` registers the tasks on it.
"""
