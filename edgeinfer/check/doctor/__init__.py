"""`edgeinfer doctor`: rank the culprits of a device's accuracy drop, shift/TTA robustness,
and its report."""
