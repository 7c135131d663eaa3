"""AlgoEdge: the API, Celery workers and beat, and the MetaAPI bridge of a retail algo-trading backend."""

__version__ = "0.1.0"
