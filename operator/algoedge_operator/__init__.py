"""The AlgoEdgeTenant operator (kopf); importing the package registers every handler."""

from algoedge_operator import handlers as handlers
