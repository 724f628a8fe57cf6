// 2-D convolutions for XLA:CPU run by oneDNN, exposed as XLA FFI handlers.
//
// Three handlers, one per direction of a convolution, called from
// jaxseg/models/onednn.py inside a jax.custom_vjp:
//   jaxseg_onednn_conv_forward          (src NHWC, kernel HWIO)   -> dst NHWC
//   jaxseg_onednn_conv_backward_data    (diff_dst, kernel)        -> diff_src
//   jaxseg_onednn_conv_backward_weights (src, diff_dst)           -> diff_kernel
// and two for inference, a convolution with what follows it fused in as
// oneDNN post-operations (no pass over memory of its own, no rounding between):
//   jaxseg_onednn_conv_inference          (src, kernel, bias)           -> dst
//   jaxseg_onednn_conv_inference_residual (src, kernel, bias, residual) -> dst
// computing activation(conv(src) + bias [+ residual]), the activation an
// attribute (0 none, 1 ReLU, 2 ReLU6, 3 hard-swish, 4 sigmoid, 5 hard-sigmoid).
// All take the attributes window_strides, rhs_dilation, padding_lo,
// padding_hi (two int64 each, as lax.conv_general_dilated's) and groups.
// Operands are float32 or bfloat16; bfloat16 convolutions accumulate in
// float32 inside oneDNN. An inference convolution's bias is float32, and its
// output (and residual) may be float32 where its operands are bfloat16.
//
// Activations stay NHWC (oneDNN's brgemm convolutions read it directly); the
// kernel is described by strides over jaxseg's HWIO layout and reordered into
// whatever blocked layout the primitive asks for. Primitives are built once
// per shape and cached.
//
// Every primitive runs on one thread of this library's own (`Executor`):
// XLA calls a handler from whichever of its pool's threads runs the thunk,
// and each thread that enters OpenMP becomes the master of a team of its
// own, so calls from four XLA threads made four teams on two cores, the
// idle ones' workers spinning against the busy one.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;

namespace {

enum class Direction { kForward = 0, kBackwardData = 1, kBackwardWeights = 2, kInference = 3 };

// An inference convolution's epilogue (post-operations).
struct Epilogue {
  int64_t activation = 0;     // 0 none, 1 ReLU, 2 ReLU6, 3 hard-swish, 4 sigmoid, 5 hard-sigmoid
  bool dst_bf16 = false;      // The output's type (the operands' otherwise).
  int64_t residual = 0;       // 0 none, 1 float32, 2 bfloat16
};

struct Geometry {
  int64_t n, h, w, c;       // src, NHWC
  int64_t kh, kw, ci, co;   // kernel, HWIO (ci = c / groups)
  int64_t oh, ow;           // dst spatial size
  int64_t sh, sw, dh, dw, pt, pl, pb, pr, groups;
  bool bf16;
  Epilogue epilogue;

  std::string Key(Direction d) const {
    std::string key;
    for (int64_t v : {static_cast<int64_t>(d), n, h, w, c, kh, kw, ci, co, oh, ow, sh, sw,
                      dh, dw, pt, pl, pb, pr, groups, static_cast<int64_t>(bf16),
                      epilogue.activation, static_cast<int64_t>(epilogue.dst_bf16),
                      epilogue.residual}) {
      key += std::to_string(v);
      key += ',';
    }
    return key;
  }
};

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

memory::data_type DataType(const Geometry& g) {
  return g.bf16 ? memory::data_type::bf16 : memory::data_type::f32;
}

memory::data_type DstType(const Geometry& g, Direction d) {
  if (d != Direction::kInference) return DataType(g);
  return g.epilogue.dst_bf16 ? memory::data_type::bf16 : memory::data_type::f32;
}

memory::data_type ResidualType(const Geometry& g) {
  return g.epilogue.residual == 2 ? memory::data_type::bf16 : memory::data_type::f32;
}

memory::desc Activations(int64_t n, int64_t c, int64_t h, int64_t w, memory::data_type dt) {
  return memory::desc({n, c, h, w}, dt, memory::format_tag::nhwc);
}

memory::dims KernelDims(const Geometry& g) {
  if (g.groups == 1) return {g.co, g.ci, g.kh, g.kw};
  return {g.groups, g.co / g.groups, g.ci, g.kh, g.kw};
}

// jaxseg's HWIO kernel ([kh, kw, ci, co], output channel fastest), described
// in oneDNN's (g)oihw dimension order by its strides.
memory::desc UserKernel(const Geometry& g) {
  const int64_t o = 1, i = g.co, x = g.ci * g.co, y = g.kw * g.ci * g.co;
  if (g.groups == 1) return memory::desc(KernelDims(g), DataType(g), memory::dims{o, i, y, x});
  return memory::desc(KernelDims(g), DataType(g), memory::dims{g.co / g.groups, o, i, y, x});
}

struct Primitive {
  dnnl::primitive compute;
  memory::desc kernel;        // The layout the primitive wants its kernel in.
  bool reorder_kernel;        // Whether that differs from jaxseg's HWIO.
  dnnl::reorder reorder;      // HWIO -> primitive (forward, backward data),
                              // primitive -> HWIO (backward weights).
  size_t scratchpad_bytes;
};

dnnl::convolution_forward::primitive_desc ForwardDesc(const Geometry& g) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto dt = DataType(g);
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
      Activations(g.n, g.c, g.h, g.w, dt),
      memory::desc(KernelDims(g), dt, memory::format_tag::any),
      Activations(g.n, g.co, g.oh, g.ow, dt), {g.sh, g.sw}, {g.dh - 1, g.dw - 1}, {g.pt, g.pl},
      {g.pb, g.pr}, attr);
}

// The inference convolution: bias, then the residual sum, then the activation.
dnnl::convolution_forward::primitive_desc InferenceDesc(const Geometry& g) {
  dnnl::post_ops ops;
  const auto dst_dt = DstType(g, Direction::kInference);
  if (g.epilogue.residual) {
    ops.append_binary(dnnl::algorithm::binary_add,
                      Activations(g.n, g.co, g.oh, g.ow, ResidualType(g)));
  }
  switch (g.epilogue.activation) {
    case 1: ops.append_eltwise(dnnl::algorithm::eltwise_relu, 0.f, 0.f); break;
    case 2: ops.append_eltwise(dnnl::algorithm::eltwise_clip, 0.f, 6.f); break;
    case 3: ops.append_eltwise(dnnl::algorithm::eltwise_hardswish, 1.f / 6.f, 0.5f); break;
    case 4: ops.append_eltwise(dnnl::algorithm::eltwise_logistic, 0.f, 0.f); break;
    case 5: ops.append_eltwise(dnnl::algorithm::eltwise_hardsigmoid, 1.f / 6.f, 0.5f); break;
    default: break;
  }
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  attr.set_post_ops(ops);
  const auto dt = DataType(g);
  return dnnl::convolution_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct,
      Activations(g.n, g.c, g.h, g.w, dt),
      memory::desc(KernelDims(g), dt, memory::format_tag::any),
      memory::desc({g.co}, memory::data_type::f32, memory::format_tag::x),
      Activations(g.n, g.co, g.oh, g.ow, dst_dt), {g.sh, g.sw}, {g.dh - 1, g.dw - 1},
      {g.pt, g.pl}, {g.pb, g.pr}, attr);
}

std::unique_ptr<Primitive> Build(const Geometry& g, Direction direction) {
  auto p = std::make_unique<Primitive>();
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  const auto dt = DataType(g);
  const memory::desc user_kernel = UserKernel(g);
  memory::desc scratchpad;
  if (direction == Direction::kInference) {
    auto inference = InferenceDesc(g);
    p->compute = dnnl::convolution_forward(inference);
    p->kernel = inference.weights_desc();
    scratchpad = inference.scratchpad_desc();
  } else if (direction == Direction::kForward) {
    auto forward = ForwardDesc(g);
    p->compute = dnnl::convolution_forward(forward);
    p->kernel = forward.weights_desc();
    scratchpad = forward.scratchpad_desc();
  } else if (direction == Direction::kBackwardData) {
    auto forward = ForwardDesc(g);
    dnnl::convolution_backward_data::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, Activations(g.n, g.c, g.h, g.w, dt),
        memory::desc(KernelDims(g), dt, memory::format_tag::any),
        Activations(g.n, g.co, g.oh, g.ow, dt), {g.sh, g.sw}, {g.dh - 1, g.dw - 1},
        {g.pt, g.pl}, {g.pb, g.pr}, forward, attr);
    p->compute = dnnl::convolution_backward_data(pd);
    p->kernel = pd.weights_desc();
    scratchpad = pd.scratchpad_desc();
  } else {
    // Accumulate the kernel gradient in float32 whatever the operands.
    auto forward = ForwardDesc(g);
    dnnl::convolution_backward_weights::primitive_desc pd(
        Engine(), dnnl::algorithm::convolution_direct, Activations(g.n, g.c, g.h, g.w, dt),
        memory::desc(KernelDims(g), memory::data_type::f32, memory::format_tag::any),
        Activations(g.n, g.co, g.oh, g.ow, dt), {g.sh, g.sw}, {g.dh - 1, g.dw - 1},
        {g.pt, g.pl}, {g.pb, g.pr}, forward, attr);
    p->compute = dnnl::convolution_backward_weights(pd);
    p->kernel = pd.diff_weights_desc();
    scratchpad = pd.scratchpad_desc();
  }
  p->scratchpad_bytes = scratchpad.get_size();
  p->reorder_kernel = p->kernel != user_kernel;
  if (p->reorder_kernel) {
    if (direction == Direction::kBackwardWeights) {
      p->reorder = dnnl::reorder(dnnl::reorder::primitive_desc(
          Engine(), p->kernel, Engine(), user_kernel));
    } else {
      p->reorder = dnnl::reorder(dnnl::reorder::primitive_desc(
          Engine(), user_kernel, Engine(), p->kernel));
    }
  }
  return p;
}

const Primitive& Cached(const Geometry& g, Direction direction) {
  static std::mutex mutex;
  static std::unordered_map<std::string, std::unique_ptr<Primitive>> cache;
  const std::string key = g.Key(direction);
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, Build(g, direction)).first;
  return *it->second;
}

// Per-thread buffers: XLA may run the same convolution on several threads.
uint8_t* ThreadBuffer(std::vector<uint8_t>& buffer, size_t bytes) {
  if (buffer.size() < bytes) buffer.resize(bytes);
  return buffer.data();
}

// The operands of one call; bias and residual only for inference.
struct Buffers {
  void *src, *kernel, *dst, *bias = nullptr, *residual = nullptr;
};

void Run(const Geometry& g, Direction direction, const Buffers& b) {
  thread_local dnnl::stream stream(Engine());
  thread_local std::vector<uint8_t> scratch, kernel_buffer;
  const Primitive& p = Cached(g, direction);
  const auto dt = DataType(g);
  void *src = b.src, *kernel = b.kernel, *dst = b.dst;
  memory src_m(Activations(g.n, g.c, g.h, g.w, dt), Engine(), src);
  memory dst_m(Activations(g.n, g.co, g.oh, g.ow, DstType(g, direction)), Engine(), dst);
  memory user_kernel(UserKernel(g), Engine(), kernel);
  memory kernel_m = user_kernel;
  if (p.reorder_kernel) {
    kernel_m = memory(p.kernel, Engine(), ThreadBuffer(kernel_buffer, p.kernel.get_size()));
  }
  memory scratch_m(memory::desc({static_cast<int64_t>(p.scratchpad_bytes)},
                                memory::data_type::u8, memory::format_tag::x),
                   Engine(), ThreadBuffer(scratch, p.scratchpad_bytes));
  if (direction == Direction::kInference) {
    if (p.reorder_kernel) p.reorder.execute(stream, user_kernel, kernel_m);
    memory bias_m(memory::desc({g.co}, memory::data_type::f32, memory::format_tag::x), Engine(),
                  b.bias);
    std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, src_m},
                                            {DNNL_ARG_WEIGHTS, kernel_m},
                                            {DNNL_ARG_BIAS, bias_m},
                                            {DNNL_ARG_DST, dst_m},
                                            {DNNL_ARG_SCRATCHPAD, scratch_m}};
    if (g.epilogue.residual) {
      args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1] =
          memory(Activations(g.n, g.co, g.oh, g.ow, ResidualType(g)), Engine(), b.residual);
    }
    p.compute.execute(stream, args);
  } else if (direction == Direction::kForward) {
    if (p.reorder_kernel) p.reorder.execute(stream, user_kernel, kernel_m);
    p.compute.execute(stream, {{DNNL_ARG_SRC, src_m},
                               {DNNL_ARG_WEIGHTS, kernel_m},
                               {DNNL_ARG_DST, dst_m},
                               {DNNL_ARG_SCRATCHPAD, scratch_m}});
  } else if (direction == Direction::kBackwardData) {
    if (p.reorder_kernel) p.reorder.execute(stream, user_kernel, kernel_m);
    p.compute.execute(stream, {{DNNL_ARG_DIFF_SRC, src_m},
                               {DNNL_ARG_WEIGHTS, kernel_m},
                               {DNNL_ARG_DIFF_DST, dst_m},
                               {DNNL_ARG_SCRATCHPAD, scratch_m}});
  } else {
    p.compute.execute(stream, {{DNNL_ARG_SRC, src_m},
                               {DNNL_ARG_DIFF_WEIGHTS, kernel_m},
                               {DNNL_ARG_DIFF_DST, dst_m},
                               {DNNL_ARG_SCRATCHPAD, scratch_m}});
    if (p.reorder_kernel) p.reorder.execute(stream, kernel_m, user_kernel);
  }
  stream.wait();
}

using Dims = ffi::AnyBuffer::Dimensions;
using Ints = ffi::Span<const int64_t>;

bool Float(ffi::DataType type) { return type == ffi::DataType::F32 || type == ffi::DataType::BF16; }

bool Same(Dims a, Dims b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

// Checks the shapes and attributes and fills g's shape fields; an empty
// string when they are consistent, else what is wrong.
std::string Describe(Dims src, Dims kernel, Dims dst, Ints strides, Ints dilation, Ints padding_lo,
                     Ints padding_hi, int64_t groups, bool bf16, Geometry& g) {
  if (src.size() != 4 || kernel.size() != 4 || dst.size() != 4 || strides.size() != 2 ||
      dilation.size() != 2 || padding_lo.size() != 2 || padding_hi.size() != 2 ||
      groups < 1 || src[3] != kernel[2] * groups || kernel[3] % groups != 0 ||
      dst[0] != src[0] || dst[3] != kernel[3]) {
    return "oneDNN convolution: inconsistent shapes or attributes";
  }
  g = Geometry{src[0],        src[1],        src[2],        src[3],        kernel[0],
               kernel[1],     kernel[2],     kernel[3],     dst[1],        dst[2],
               strides[0],    strides[1],    dilation[0],   dilation[1],   padding_lo[0],
               padding_lo[1], padding_hi[0], padding_hi[1], groups,        bf16};
  return "";
}

// One thread that runs every primitive, so that one OpenMP team does all the
// work (see the top of the file). A caller hands it a task and waits; the
// thread spins briefly for the next task before it sleeps, as the calls of
// one network follow each other closely.
class Executor {
 public:
  static Executor& Get() {
    static Executor* executor = new Executor();  // Never destroyed: lives to exit.
    return *executor;
  }

  void Run(const std::function<void()>& task) {
    if (std::this_thread::get_id() == worker_id_) return task();
    std::unique_lock<std::mutex> lock(mutex_);
    idle_.wait(lock, [this] { return task_ == nullptr; });  // Callers take turns.
    task_ = &task;
    done_ = false;
    pending_.store(true, std::memory_order_release);
    ready_.notify_one();
    finished_.wait(lock, [this] { return done_; });
    task_ = nullptr;
    idle_.notify_one();
  }

 private:
  Executor() : worker_([this] { Loop(); }) {
    worker_id_ = worker_.get_id();
    worker_.detach();
  }

  void Loop() {
    for (;;) {
      for (int spin = 0; spin < 20000 && !pending_.load(std::memory_order_acquire); ++spin) {
        std::this_thread::yield();
      }
      std::unique_lock<std::mutex> lock(mutex_);
      ready_.wait(lock, [this] { return pending_.load(std::memory_order_acquire); });
      pending_.store(false, std::memory_order_relaxed);
      const std::function<void()>* task = task_;
      lock.unlock();
      (*task)();
      lock.lock();
      done_ = true;
      finished_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_, finished_, idle_;
  std::atomic<bool> pending_{false};
  const std::function<void()>* task_ = nullptr;
  bool done_ = false;
  std::thread worker_;
  std::thread::id worker_id_;
};

ffi::Error Execute(const Geometry& g, Direction direction, const Buffers& buffers) {
  std::string failure;
  Executor::Get().Run([&] {
    try {
      Run(g, direction, buffers);
    } catch (const dnnl::error& e) {
      failure = e.what();
    }
  });
  if (!failure.empty()) return ffi::Error::Internal("oneDNN convolution: " + failure);
  return ffi::Error::Success();
}

ffi::Error Convolution(Direction direction, ffi::AnyBuffer a, ffi::AnyBuffer b,
                       ffi::Result<ffi::AnyBuffer> out, Ints strides, Ints dilation,
                       Ints padding_lo, Ints padding_hi, int64_t groups) {
  // Which operand holds which tensor depends on the direction.
  Dims src, kernel, dst;
  Buffers buffers;
  switch (direction) {
    case Direction::kForward:
      src = a.dimensions(), kernel = b.dimensions(), dst = out->dimensions();
      buffers = {a.untyped_data(), b.untyped_data(), out->untyped_data()};
      break;
    case Direction::kBackwardData:
      dst = a.dimensions(), kernel = b.dimensions(), src = out->dimensions();
      buffers = {out->untyped_data(), b.untyped_data(), a.untyped_data()};
      break;
    default:
      src = a.dimensions(), dst = b.dimensions(), kernel = out->dimensions();
      buffers = {a.untyped_data(), out->untyped_data(), b.untyped_data()};
  }
  const auto type = a.element_type();
  if (type != b.element_type() || type != out->element_type() || !Float(type)) {
    return ffi::Error::InvalidArgument("oneDNN convolution: operands must all be F32 or BF16");
  }
  Geometry g;
  std::string wrong = Describe(src, kernel, dst, strides, dilation, padding_lo, padding_hi, groups,
                               type == ffi::DataType::BF16, g);
  if (!wrong.empty()) return ffi::Error::InvalidArgument(wrong);
  return Execute(g, direction, buffers);
}

template <Direction direction>
ffi::Error ConvolutionIn(ffi::AnyBuffer a, ffi::AnyBuffer b, ffi::Result<ffi::AnyBuffer> out,
                         Ints strides, Ints dilation, Ints padding_lo, Ints padding_hi,
                         int64_t groups) {
  return Convolution(direction, a, b, out, strides, dilation, padding_lo, padding_hi, groups);
}

ffi::Error Inference(ffi::AnyBuffer src, ffi::AnyBuffer kernel, ffi::Buffer<ffi::F32> bias,
                     const ffi::AnyBuffer* residual, ffi::Result<ffi::AnyBuffer> out,
                     Ints strides, Ints dilation, Ints padding_lo, Ints padding_hi,
                     int64_t groups, int64_t activation) {
  const auto type = src.element_type();
  if (type != kernel.element_type() || !Float(type) || !Float(out->element_type()) ||
      (residual && residual->element_type() != out->element_type())) {
    return ffi::Error::InvalidArgument(
        "oneDNN convolution: src and kernel must be both F32 or BF16, the output and residual "
        "one of them");
  }
  Geometry g;
  std::string wrong = Describe(src.dimensions(), kernel.dimensions(), out->dimensions(), strides,
                               dilation, padding_lo, padding_hi, groups,
                               type == ffi::DataType::BF16, g);
  if (wrong.empty() && (bias.dimensions().size() != 1 || bias.dimensions()[0] != g.co ||
                        (residual && !Same(residual->dimensions(), out->dimensions())) ||
                        activation < 0 || activation > 5)) {
    wrong = "oneDNN convolution: bias, residual or activation inconsistent with the output";
  }
  if (!wrong.empty()) return ffi::Error::InvalidArgument(wrong);
  const bool dst_bf16 = out->element_type() == ffi::DataType::BF16;
  g.epilogue = {activation, dst_bf16, residual ? (dst_bf16 ? 2 : 1) : 0};
  Buffers buffers{src.untyped_data(), kernel.untyped_data(), out->untyped_data(),
                  bias.untyped_data(), residual ? residual->untyped_data() : nullptr};
  return Execute(g, Direction::kInference, buffers);
}

ffi::Error InferencePlain(ffi::AnyBuffer src, ffi::AnyBuffer kernel, ffi::Buffer<ffi::F32> bias,
                          ffi::Result<ffi::AnyBuffer> out, Ints strides, Ints dilation,
                          Ints padding_lo, Ints padding_hi, int64_t groups, int64_t activation) {
  return Inference(src, kernel, bias, nullptr, out, strides, dilation, padding_lo, padding_hi,
                   groups, activation);
}

ffi::Error InferenceResidual(ffi::AnyBuffer src, ffi::AnyBuffer kernel,
                             ffi::Buffer<ffi::F32> bias, ffi::AnyBuffer residual,
                             ffi::Result<ffi::AnyBuffer> out, Ints strides, Ints dilation,
                             Ints padding_lo, Ints padding_hi, int64_t groups,
                             int64_t activation) {
  return Inference(src, kernel, bias, &residual, out, strides, dilation, padding_lo, padding_hi,
                   groups, activation);
}

}  // namespace

#define JAXSEG_CONVOLUTION_HANDLER(name, direction)                            \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(name, ConvolutionIn<direction>,               \
                                ffi::Ffi::Bind()                                \
                                    .Arg<ffi::AnyBuffer>()                      \
                                    .Arg<ffi::AnyBuffer>()                      \
                                    .Ret<ffi::AnyBuffer>()                      \
                                    .Attr<ffi::Span<const int64_t>>("window_strides") \
                                    .Attr<ffi::Span<const int64_t>>("rhs_dilation")   \
                                    .Attr<ffi::Span<const int64_t>>("padding_lo")     \
                                    .Attr<ffi::Span<const int64_t>>("padding_hi")     \
                                    .Attr<int64_t>("groups"));

#define JAXSEG_GEOMETRY_ATTRIBUTES                                             \
  .Attr<ffi::Span<const int64_t>>("window_strides")                             \
      .Attr<ffi::Span<const int64_t>>("rhs_dilation")                           \
      .Attr<ffi::Span<const int64_t>>("padding_lo")                             \
      .Attr<ffi::Span<const int64_t>>("padding_hi")                             \
      .Attr<int64_t>("groups")

// Built with hidden visibility; these are the library's only exports.
#pragma GCC visibility push(default)
JAXSEG_CONVOLUTION_HANDLER(jaxseg_onednn_conv_forward, Direction::kForward)
JAXSEG_CONVOLUTION_HANDLER(jaxseg_onednn_conv_backward_data, Direction::kBackwardData)
JAXSEG_CONVOLUTION_HANDLER(jaxseg_onednn_conv_backward_weights, Direction::kBackwardWeights)
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxseg_onednn_conv_inference, InferencePlain,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::AnyBuffer>() JAXSEG_GEOMETRY_ATTRIBUTES
                                  .Attr<int64_t>("activation"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(jaxseg_onednn_conv_inference_residual, InferenceResidual,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>() JAXSEG_GEOMETRY_ATTRIBUTES
                                  .Attr<int64_t>("activation"));

// The oneDNN version the library runs with, for the one-line start message.
extern "C" int jaxseg_onednn_version(char* buffer, int size) {
  const dnnl_version_t* v = dnnl_version();
  return snprintf(buffer, size, "oneDNN %d.%d.%d", v->major, v->minor, v->patch);
}
#pragma GCC visibility pop
