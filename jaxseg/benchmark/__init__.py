"""Speed: throughput, FLOPs, MFU and memory of the real train and inference
steps (`throughput`), batch-1 latency (`latency`), each export in its runtime
(`exports`) and the PyTorch side of the comparisons (`pytorch_reference`, run
with torch's Python). The command is `python -m jaxseg.benchmark`
(`__main__.py`)."""
