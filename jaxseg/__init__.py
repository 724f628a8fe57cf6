"""jaxseg: semantic segmentation in JAX/Flax."""

import os

__version__ = "0.1.0"

# XLA:CPU sends individual convolutions to YNNPACK, whose weight-gradient
# convolutions are slow; routing them elsewhere doubles convolution-network
# training speed on CPU (measured on jaxlib 0.10). The flag only concerns the
# CPU backend. It is added unless the user's XLA_FLAGS already set it or
# JAXSEG_XLA_FLAGS=0; it must be in place before JAX creates its CPU client.
_CPU_CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
if os.environ.get("JAXSEG_XLA_FLAGS", "1") != "0":
  _flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_experimental_ynn_fusion_type" not in _flags:
    os.environ["XLA_FLAGS"] = f"{_flags} {_CPU_CONV_FLAG}".strip()
