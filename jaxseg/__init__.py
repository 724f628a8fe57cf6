"""jaxseg: semantic segmentation in JAX/Flax."""

import os

__version__ = "0.1.0"

# XLA:CPU sends individual convolutions to YNNPACK, whose weight-gradient
# convolutions are slow; routing them elsewhere doubled convolution-network
# training speed on CPU where XLA runs the convolutions (measured on jaxlib
# 0.10; with jaxseg's oneDNN convolutions it concerns the fallback and
# multi-device CPU runs). The flag only concerns the CPU backend.
CPU_CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def set_xla_flags() -> None:
  """Adds jaxseg's XLA:CPU flag to `XLA_FLAGS`, unless the user's `XLA_FLAGS`
  already set it or `JAXSEG_XLA_FLAGS=0`.

  XLA reads its flags when JAX creates its CPU client, at the first
  computation: call this before (jaxseg's command lines do at start-up; a
  notebook in its first cell). Nothing happens on import.
  """
  if os.environ.get("JAXSEG_XLA_FLAGS", "1") == "0":
    return
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_experimental_ynn_fusion_type" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} {CPU_CONV_FLAG}".strip()
