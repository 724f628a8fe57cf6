"""Writes a demo clip of the embedded dataset's shapes moving, to try video prediction on:
`python -m jaxseg.video --write_demo=clip.mp4` (then `python -m jaxseg.predict --input=clip.mp4`).

The streaming loop itself (decode, model, encode) is `jaxseg.inference.video`.
"""

import argparse

from jaxseg.inference import video


def main() -> None:
  parser = argparse.ArgumentParser(
    description="Writes a demo clip: the embedded dataset's shapes, moving "
    "(python -m jaxseg.video --write_demo=clip.mp4)."
  )
  parser.add_argument("--write_demo", required=True, help="Path of the .mp4 to write.")
  parser.add_argument("--seconds", type=float, default=10.0)
  parser.add_argument("--size", default="480,640", help="Height,width.")
  parser.add_argument("--fps", type=int, default=30)
  args = parser.parse_args()
  height, width = (int(v) for v in args.size.split(","))
  count = video.write_demo_clip(args.write_demo, args.seconds, height, width, args.fps)
  print(f"{args.write_demo}: {count} frames, {width}x{height} at {args.fps} frames/s")


if __name__ == "__main__":
  main()
