"""The translator's state: nodes being built, graph-computed dimensions,
values with their layouts, and the walk over a jaxpr that dispatches to the
rules."""

import numpy as np

OPSET = 17
IR_VERSION = 8  # The IR of opset 17; any onnxruntime since 1.13 loads it.
_FOLD_LIMIT = 1 << 20  # Largest constant (elements) folded at conversion time.
NCHW = (0, 3, 1, 2)  # The layout convolutions run in, as a permutation of NHWC.


def onnx_dtype(dtype) -> int:
  from onnx import helper

  return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


class Graph:
  """Nodes and initializers being built, with fresh names."""

  def __init__(self, prefix: str = ""):
    self.nodes, self.initializers, self._count, self._prefix = [], [], 0, prefix
    self.constants: dict[str, np.ndarray] = {}  # Initializer name -> its value.

  def name(self, base: str) -> str:
    self._count += 1
    return f"{self._prefix}{base}_{self._count}"

  def const(self, value, dtype=None) -> str:
    from onnx import numpy_helper

    array = np.asarray(value, dtype)
    name = self.name("const")
    self.initializers.append(numpy_helper.from_array(array, name))
    self.constants[name] = array
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
  """A graph value of JAX shape `aval.shape`.

  `lazy`: the tensor has the right rank but size-1 axes where the JAX value is
  broadcast. `perm`: the tensor is stored transposed, as
  `jnp.transpose(value, perm)` (a convolution's output is NCHW while JAX's
  value is NHWC); None when stored as JAX has it."""

  def __init__(self, name: str, aval, lazy: bool = False, perm=None):
    perm = tuple(int(p) for p in perm) if perm is not None else None
    if perm == tuple(range(len(aval.shape))):
      perm = None
    self.name, self.aval, self.lazy, self.perm = name, aval, lazy, perm


def inverse(perm):
  return tuple(int(i) for i in np.argsort(perm))


class Translator:
  """Builds the ONNX graph of a jaxpr whose inputs have dimension variables
  bound to graph values (`dims`: name -> `Dim`). `rules`: primitive name ->
  rule; `named`: name of a jitted function -> rule for the whole call."""

  def __init__(self, rules, named):
    self.graph = Graph()
    self.dims: dict[str, Dim] = {}
    self.rules, self.named = rules, named
    self._stored: dict[tuple, str] = {}  # (name, perm, expanded) -> name: no repeats.

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
    """The graph name of `x` as JAX has it: full shape, JAX's axis order
    (constants become initializers)."""
    return self.stored(x, None)

  def operand(self, x, perm=None) -> str:
    """The graph name of `x` in layout `perm` for an elementwise op (which
    broadcasts, so a lazy value stays unexpanded)."""
    return self.stored(x, perm, expand=False)

  def stored(self, x, perm, expand: bool = True) -> str:
    """The graph name of `x` stored as `jnp.transpose(x, perm)` (None: JAX's order)."""
    if isinstance(x, np.ndarray):
      if perm is None or x.ndim != len(perm):
        return self.graph.const(x)
      return self.graph.const(np.ascontiguousarray(np.transpose(x, perm)))
    if perm is not None and (len(perm) != len(x.aval.shape) or perm == tuple(range(len(perm)))):
      perm = None  # JAX's order (or a scalar, which broadcasts in any layout).
    key = (x.name, perm, x.perm, expand and x.lazy)
    if key not in self._stored:
      self._stored[key] = self._restore(x, perm, expand)
    return self._stored[key]

  def _restore(self, x, perm, expand):
    name, rank = x.name, len(x.aval.shape)
    if x.perm != perm:  # Physical axis i of the result is axis step[i] of the stored tensor.
      have = x.perm or tuple(range(rank))
      want = perm or tuple(range(rank))
      step = [have.index(axis) for axis in want]
      value = self.graph.constants.get(name)
      if value is not None:
        name = self.graph.const(np.ascontiguousarray(np.transpose(value, step)))
      else:
        name = self.graph.op("Transpose", [name], perm=step)
    if expand and x.lazy:
      name = self.graph.op("Expand", [name, self.shape(self.physical_shape(x.aval.shape, perm))])
    return name

  @staticmethod
  def physical_shape(shape, perm):
    return tuple(shape) if perm is None else tuple(shape[p] for p in perm)

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

    if _foldable(eqn, inputs):
      outs = eqn.primitive.bind(*inputs, **eqn.params)
      outs = outs if eqn.primitive.multiple_results else [outs]
      return [np.asarray(jax.device_get(o)) for o in outs]
    sub = _sub_jaxpr(eqn)
    named = self.named.get(eqn.params.get("name")) if sub is not None else None
    out = named(self, eqn, *inputs) if named is not None else None
    if out is not None:  # A function with an ONNX operation of its own (HardSwish, Resize).
      return [out]
    if sub is not None:
      jaxpr, consts = sub
      return self.run(jaxpr, consts, inputs)
    rule = self.rules.get(eqn.primitive.name)
    if rule is None:
      raise NotImplementedError(
        f"ONNX export: no translation for JAX primitive {eqn.primitive.name}"
      )
    out = rule(self, eqn, *inputs)
    return out if isinstance(out, list) else [out]

  def tensor(self, name: str, eqn, lazy: bool = False, index: int = 0, perm=None) -> Value:
    return Value(name, eqn.outvars[index].aval, lazy, perm)

  def crop(self, name, shape, front, back):
    """Crops `front[i]` elements from the start and `back[i]` from the end of
    axis i of the tensor `name` of (possibly symbolic) `shape`."""
    axes = [i for i in range(len(shape)) if front[i] or back[i]]
    starts = [front[i] for i in axes]
    ends = [self.dim(shape[i]) - back[i] if back[i] else np.iinfo(np.int64).max for i in axes]
    g = self.graph
    return g.op(
      "Slice", [name, g.const(starts, np.int64), self.shape(ends), g.const(axes, np.int64)]
    )


def layout_of(xs):
  """The layout an elementwise op on `xs` computes in: that of its first
  full-size operand (the others are transposed to it), else of its first
  value."""
  values = [x for x in xs if isinstance(x, Value)]
  full = [x for x in values if not x.lazy]
  chosen = (full or values or [None])[0]
  return chosen.perm if chosen is not None else None


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
  if eqn.primitive.name == "dim_as_value" or not all(isinstance(x, np.ndarray) for x in inputs):
    return False  # A symbolic dimension's value is known only in the graph.
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
