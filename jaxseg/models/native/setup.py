"""Builds `jaxseg_onednn/_onednn_conv*.so` from onednn_conv.cc.

Never fails the install: where the library cannot be built (no C++ compiler,
no oneDNN wheel for this OS or CPU, JAXSEG_ONEDNN_BUILD=0) the package installs
without it, says why, and jaxseg runs every convolution on XLA.
"""

import importlib.metadata
import os
import platform
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


def _locate(distribution: str, suffix: str) -> str:
  """The absolute path of a file an installed wheel (of the build
  environment) put anywhere, data files included."""
  for file in importlib.metadata.files(distribution) or []:
    if str(file).replace(os.sep, "/").endswith(suffix):
      return str(file.locate())
  raise FileNotFoundError(f"{distribution} has no {suffix}")


class OptionalBuildExt(build_ext):
  def build_extension(self, ext):
    try:
      if os.environ.get("JAXSEG_ONEDNN_BUILD", "1") == "0":
        raise RuntimeError("JAXSEG_ONEDNN_BUILD=0")
      if not (sys.platform == "linux" and platform.machine() == "x86_64"):
        raise RuntimeError("oneDNN's CPU wheels are for Linux x86-64 only")
      dnnl_hpp = _locate("onednn-devel-cpu-gomp", "include/oneapi/dnnl/dnnl.hpp")
      libdnnl = _locate("onednn-cpu-gomp", "/libdnnl.so.3")
      ffi_h = _locate("jaxlib", "include/xla/ffi/api/ffi.h")
      ext.include_dirs.append(dnnl_hpp.removesuffix("/oneapi/dnnl/dnnl.hpp"))
      ext.extra_compile_args += ["-isystem", ffi_h.removesuffix("/xla/ffi/api/ffi.h")]
      # libdnnl.so.3 sits in <prefix>/lib: from site-packages/jaxseg_onednn
      # that is three levels up (jaxseg.models.onednn also preloads it).
      ext.extra_link_args += [libdnnl, "-Wl,-rpath,$ORIGIN/../../.."]
      super().build_extension(ext)
    except Exception as error:  # Any failure leaves jaxseg on XLA.
      print(
        f"jaxseg-onednn: the oneDNN convolution library was not built ({error}); "
        "jaxseg will run convolutions on XLA.",
        file=sys.stderr,
      )


setup(
  ext_modules=[
    Extension(
      "jaxseg_onednn._onednn_conv",
      sources=["onednn_conv.cc"],
      language="c++",
      extra_compile_args=["-std=c++17", "-g0", "-fvisibility=hidden", "-pthread"],
      extra_link_args=["-pthread"],  # The executor thread (onednn_conv.cc).
    )
  ],
  cmdclass={"build_ext": OptionalBuildExt},
)
