"""`edgeinfer check`: the parity ladder (framework vs each artifact, step by step), report."""
