"""The translator's state: nodes being built, graph-computed dimensions,
values, and the walk over a jaxpr that dispatches to `rules`."""

import numpy as np

from jaxseg.export.to_onnx.rules import RULES

OPSET = 17
IR_VERSION = 8  # The IR of opset 17; any onnxruntime since 1.13 loads it.
_FOLD_LIMIT = 1 << 20  # Largest constant (elements) folded at conversion time.


class Graph:
  """Nodes and initializers being built, with fresh names."""

  def __init__(self, prefix: str = ""):
    self.nodes, self.initializers, self._count, self._prefix = [], [], 0, prefix

  def name(self, base: str) -> str:
    self._count += 1
    return f"{self._prefix}{base}_{self._count}"

  def const(self, value, dtype=None) -> str:
    from onnx import numpy_helper

    array = np.asarray(value, dtype)
    name = self.name("const")
    self.initializers.append(numpy_helper.from_array(array, name))
    return name

  def op(self, op_type: str, inputs, outputs: int = 1, **attrs):
    from onnx import helper

    names = [self.name(op_type.lower()) for _ in range(outputs)]
    self.nodes.append(helper.make_node(op_type, list(inputs), names, **attrs))
    return names[0] if outputs == 1 else names


class Dim:
  """A dimension computed in the graph: an int64 tensor of shape [1].

  Supports the arithmetic of JAX's dimension expressions (`+`, `*`, floor
  `divmod`), so `expr._evaluate({"h": Dim(...)})` builds the nodes."""

  def __init__(self, graph: Graph, name: str):
    self.graph, self.name = graph, name

  def _tensor(self, other) -> str:
    return other.name if isinstance(other, Dim) else self.graph.const([int(other)], np.int64)

  def _binary(self, op_type, a, b) -> "Dim":
    return Dim(self.graph, self.graph.op(op_type, [self._tensor(a), self._tensor(b)]))

  def __add__(self, other):
    return self._binary("Add", self, other)

  def __radd__(self, other):
    return self._binary("Add", other, self)

  def __sub__(self, other):
    return self._binary("Sub", self, other)

  def __rsub__(self, other):
    return self._binary("Sub", other, self)

  def __mul__(self, other):
    return self._binary("Mul", self, other)

  def __rmul__(self, other):
    return self._binary("Mul", other, self)

  def __neg__(self):
    return self._binary("Sub", 0, self)

  def _divmod(self, a, b):
    # ONNX's integer Div truncates; Mod(fmod=0) has Python's sign rule.
    g = self.graph
    mod = g.op("Mod", [self._tensor(a), self._tensor(b)], fmod=0)
    div = g.op("Div", [g.op("Sub", [self._tensor(a), mod]), self._tensor(b)])
    return Dim(g, div), Dim(g, mod)

  def __divmod__(self, other):
    return self._divmod(self, other)

  def __rdivmod__(self, other):
    return self._divmod(other, self)

  def __floordiv__(self, other):
    return self._divmod(self, other)[0]

  def __mod__(self, other):
    return self._divmod(self, other)[1]


class Value:
  """A graph value of JAX shape `aval.shape`. `lazy`: the tensor has the
  right rank but size-1 axes where the JAX value is broadcast."""

  def __init__(self, name: str, aval, lazy: bool = False):
    self.name, self.aval, self.lazy = name, aval, lazy


class Translator:
  """Builds the ONNX graph of a jaxpr whose inputs have dimension variables
  bound to graph values (`dims`: name -> `Dim`)."""

  def __init__(self):
    self.graph = Graph()
    self.dims: dict[str, Dim] = {}

  # --- values ---------------------------------------------------------------

  def dim(self, d):
    """An int, or a `Dim` for a symbolic dimension expression."""
    if isinstance(d, (int, np.integer)):
      return int(d)
    return d._evaluate(self.dims)  # JAX's own evaluator, on graph values.

  def shape(self, dims) -> str:
    """An int64 shape tensor for a tuple of (possibly symbolic) dimensions."""
    values = [self.dim(d) for d in dims]
    if all(isinstance(v, int) for v in values):
      return self.graph.const(values, np.int64)
    parts = [v.name if isinstance(v, Dim) else self.graph.const([v], np.int64) for v in values]
    return self.graph.op("Concat", parts, axis=0)

  def name(self, x) -> str:
    """The graph name of `x` with its full JAX shape (constants become
    initializers; lazy broadcasts are expanded)."""
    if isinstance(x, np.ndarray):
      return self.graph.const(x)
    if x.lazy:
      return self.graph.op("Expand", [x.name, self.shape(x.aval.shape)])
    return x.name

  def operand(self, x) -> str:
    """The graph name of `x` for an elementwise op (which broadcasts)."""
    if isinstance(x, np.ndarray):
      return self.graph.const(x)
    return x.name

  # --- jaxprs ---------------------------------------------------------------

  def run(self, jaxpr, consts, args):
    """Translates `jaxpr` (a core.Jaxpr) applied to `args`; returns its outputs."""
    import jax

    env = {}

    def read(v):
      if isinstance(v, jax.extend.core.Literal):
        return np.asarray(v.val, v.aval.dtype)
      return env[v]

    for v, value in zip(jaxpr.constvars, consts, strict=True):
      env[v] = np.asarray(value)
    for v, value in zip(jaxpr.invars, args, strict=True):
      env[v] = value
    for eqn in _live_equations(jaxpr):
      inputs = [read(v) for v in eqn.invars]
      outputs = self.equation(eqn, inputs)
      for v, value in zip(eqn.outvars, outputs, strict=True):
        env[v] = value
    return [read(v) for v in jaxpr.outvars]

  def equation(self, eqn, inputs):
    import jax

    sub = _sub_jaxpr(eqn)
    if sub is not None:
      jaxpr, consts = sub
      return self.run(jaxpr, consts, inputs)
    if _foldable(eqn, inputs):
      outs = eqn.primitive.bind(*inputs, **eqn.params)
      outs = outs if eqn.primitive.multiple_results else [outs]
      return [np.asarray(jax.device_get(o)) for o in outs]
    rule = RULES.get(eqn.primitive.name)
    if rule is None:
      raise NotImplementedError(
        f"ONNX export: no translation for JAX primitive {eqn.primitive.name}"
      )
    out = rule(self, eqn, *inputs)
    return out if isinstance(out, list) else [out]

  def value(self, name: str, aval, lazy: bool = False) -> "Value":
    return Value(name, aval, lazy)

  def tensor(self, name: str, eqn, lazy: bool = False, index: int = 0) -> Value:
    return Value(name, eqn.outvars[index].aval, lazy)


def _sub_jaxpr(eqn):
  """(jaxpr, consts) of a call-like equation (jit, custom_jvp/vjp, remat)."""
  import jax

  for key in ("jaxpr", "call_jaxpr"):
    sub = eqn.params.get(key)
    if isinstance(sub, jax.extend.core.ClosedJaxpr):
      return sub.jaxpr, sub.consts
    if isinstance(sub, jax.extend.core.Jaxpr):
      return sub, ()
  return None


def _foldable(eqn, inputs) -> bool:
  if not all(isinstance(x, np.ndarray) for x in inputs):
    return False
  for v in eqn.outvars:
    shape = v.aval.shape
    if not all(isinstance(d, (int, np.integer)) for d in shape) or np.prod(shape) > _FOLD_LIMIT:
      return False
  return True


def _live_equations(jaxpr):
  """The equations an output depends on, in order (dead code dropped: e.g.
  a PRNG key made for a dropout that inference does not use)."""
  import jax

  live = {v for v in jaxpr.outvars if not isinstance(v, jax.extend.core.Literal)}
  kept = []
  for eqn in reversed(jaxpr.eqns):
    if any(v in live for v in eqn.outvars) or eqn.effects:
      kept.append(eqn)
      live.update(v for v in eqn.invars if not isinstance(v, jax.extend.core.Literal))
  return kept[::-1]
