"""`edgeinfer pack` (framework side) and `edgeinfer verify` (device side, lean) and their report."""
