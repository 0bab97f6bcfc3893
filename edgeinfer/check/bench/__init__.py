"""`edgeinfer bench`: latency, start-up and memory beside the baselines; its report."""
