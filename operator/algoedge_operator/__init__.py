"""The AlgoEdgeTenant operator (kopf); its handlers arrive with the operator issue."""
