"""The converter (floor 4): every framework import happens below this package.

torchao (imported by transformers models, by transformers' image processors that
``spec_from`` builds to prove a derived spec, and by litert-torch) warns "Failed to load
.../torchao/_C_mxfp8...so" for CUDA kernels a CPU conversion never uses, and torch's pytree
module then warns about torchao's enums: two to four lines on every such command. They are
silenced at their loggers when this package loads, before any of its modules can import
torchao (their errors still show); the torch frontend used to do it, too late once
``spec_from`` imported transformers first.
"""

import logging

for _noisy in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)
