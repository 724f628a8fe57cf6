"""Exports of a trained run and the files that serve them.

`exporter` writes a run in each format (`stablehlo`, `onnx_format` through our
jaxpr-to-ONNX translator `to_onnx/`, `tf_formats` for SavedModel and TFLite),
each checked against the training code (`parity`). `serving*.py` run an export
with no jaxseg installed and are copied next to it: they import nothing from
jaxseg on purpose. The command is `python -m jaxseg.export` (`__main__.py`).
"""
