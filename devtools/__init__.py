"""What tests, benchmarks and `make dev` share: real services on loopback, the local control plane, the SMTP sink.

Nothing here imports ``tests`` (an import-linter contract holds it): tests, ``bench/`` and
``make dev`` build on this package, not on each other.
"""
