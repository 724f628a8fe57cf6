"""Results as tables a person reads: the per-class table of one evaluation and
the side-by-side table of several runs (`jaxseg.compare`)."""

from collections.abc import Mapping, Sequence

import numpy as np


def format_table(metrics: Mapping, class_names: Sequence[str]) -> str:
  """A per-class table (IoU, accuracy, and Boundary IoU where scored), the
  summary line and the trimap line, in percent."""
  width = max(len("class"), *(len(n) for n in class_names))
  boundary = "biou" in metrics
  rule = "-" * (width + (24 if boundary else 16))
  lines = [f"{'class':<{width}}    IoU     Acc" + ("    BIoU" if boundary else ""), rule]
  for i, name in enumerate(class_names):
    cells = [metrics["iou"][i], metrics["acc"][i]] + ([metrics["biou"][i]] if boundary else [])
    lines.append(f"{name:<{width}}" + "".join(f"  {_pct(v)}" for v in cells))
  lines.append(rule)
  lines.append(
    f"mIoU {_pct(metrics['miou']).strip()}  mAcc {_pct(metrics['macc']).strip()}  "
    f"aAcc {_pct(metrics['aacc']).strip()}  mDice {_pct(metrics['mdice']).strip()}"
    + (f"  mBIoU {_pct(metrics['mbiou']).strip()}" if boundary else "")
  )
  if "trimap" in metrics:
    lines.append(
      "trimap mIoU / aAcc within w px of a boundary: "
      + "  ".join(
        f"w={row['width']} {_pct(row['miou']).strip()}/{_pct(row['aacc']).strip()}"
        for row in metrics["trimap"]
      )
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
  label_width = max(len("fg precision" if binary else "mIoU ≤32px"), *(len(c) for c in classes))
  header = " " * label_width + "".join(f"{n:>{width + 2}}" for n in names)
  lines = [header, "-" * len(header)]

  def row(label, values):
    cells = "".join(f"{'n/a' if v is None else f'{100 * v:.2f}':>{width + 2}}" for v in values)
    return f"{label:<{label_width}}{cells}"

  lines += [row(c, [r["iou"][c] for r in results]) for c in classes]
  lines.append("-" * len(header))
  lines += [row(k, [r[k.lower()] for r in results]) for k in ("mIoU", "mAcc", "aAcc")]
  if all("mbiou" in r for r in results):  # At the edges (`scoring.boundary`).
    lines.append(row("mBIoU", [r["mbiou"] for r in results]))
  if all("trimap" in r for r in results):
    for i, band in enumerate(results[0]["trimap"]):
      lines.append(row(f"mIoU ≤{band['width']}px", [r["trimap"][i]["miou"] for r in results]))
  if binary:
    lines += [
      row(f"fg {k}", [r["foreground"][k] for r in results])
      for k in ("iou", "f1", "precision", "recall")
    ]
  return "\n".join(lines)
