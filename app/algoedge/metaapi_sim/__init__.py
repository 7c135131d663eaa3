"""A local MetaAPI: provisioning REST and the socket.io streaming protocol that metaapi-cloud-sdk 29.x speaks.

Runs in the bridge environment (python-socketio 4 / python-engineio 3, as the SDK); see
docs/metaapi-sim.md for what it implements and where it departs from MetaAPI.
"""
