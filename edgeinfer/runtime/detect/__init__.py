"""Detection in the lean runtime (issue 28, first pieces): the frame <-> model-input geometry
(letterbox, stretch) with its exact inverse, and class-aware non-maximum suppression.
numpy only; the detector artifact contract and the Detector build on these."""
