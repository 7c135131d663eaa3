"""The MetaAPI bridge: every linked MT5 account connected exactly once across replicas (docs/bridge.md)."""
