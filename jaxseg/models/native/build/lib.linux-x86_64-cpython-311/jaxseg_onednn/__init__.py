"""Holds `_onednn_conv*.so`, the oneDNN convolution handlers that
`jaxseg.models.onednn` registers with XLA (absent where it was not built)."""
