"""Results as tables a person reads: the per-class table of one evaluation and
the side-by-side table of several runs (`jaxseg.compare`)."""

from collections.abc import Mapping, Sequence

import numpy as np


def format_table(metrics: Mapping, class_names: Sequence[str]) -> str:
  """A per-class table (IoU, accuracy) and the summary line, in percent."""
  width = max(len("class"), *(len(n) for n in class_names))
  lines = [f"{'class':<{width}}    IoU     Acc", "-" * (width + 16)]
  for name, iou, acc in zip(class_names, metrics["iou"], metrics["acc"], strict=True):
    lines.append(f"{name:<{width}}  {_pct(iou)}  {_pct(acc)}")
  lines.append("-" * (width + 16))
  lines.append(
    f"mIoU {_pct(metrics['miou']).strip()}  mAcc {_pct(metrics['macc']).strip()}  "
    f"aAcc {_pct(metrics['aacc']).strip()}  mDice {_pct(metrics['mdice']).strip()}"
  )
  if "foreground" in metrics:
    fg = metrics["foreground"]
    lines.append(
      f"{class_names[fg['index']]} (probability >= {metrics['threshold']:g}): "
      f"IoU {_pct(fg['iou']).strip()}  F1 {_pct(fg['f1']).strip()}  "
      f"precision {_pct(fg['precision']).strip()}  recall {_pct(fg['recall']).strip()}"
    )
  return "\n".join(lines)


def _pct(x: float) -> str:
  return "   n/a" if np.isnan(x) else f"{100 * x:6.2f}"


def format_comparison(names: list[str], results: list[dict]) -> str:
  """Rows: classes then mIoU, mAcc, aAcc (and a binary run's foreground
  scores); one column per run; in percent. `results` are `writers.to_json`
  records."""
  width = max(12, *(len(n) for n in names))
  classes = list(results[0]["iou"])
  binary = all("foreground" in r for r in results)
  label_width = max(len("fg precision" if binary else "aAcc"), *(len(c) for c in classes))
  header = " " * label_width + "".join(f"{n:>{width + 2}}" for n in names)
  lines = [header, "-" * len(header)]

  def row(label, values):
    cells = "".join(f"{'n/a' if v is None else f'{100 * v:.2f}':>{width + 2}}" for v in values)
    return f"{label:<{label_width}}{cells}"

  lines += [row(c, [r["iou"][c] for r in results]) for c in classes]
  lines.append("-" * len(header))
  lines += [row(k, [r[k.lower()] for r in results]) for k in ("mIoU", "mAcc", "aAcc")]
  if binary:
    lines += [
      row(f"fg {k}", [r["foreground"][k] for r in results])
      for k in ("iou", "f1", "precision", "recall")
    ]
  return "\n".join(lines)
