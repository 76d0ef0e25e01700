// oneDNN convolutions for JAX on CPU, as XLA FFI handlers (jax_impl/cpu_conv.py builds and registers them).
//
// Three handlers, NHWC activations and HWIO weights (Flax's layouts, so no relayout on either side), all operands
// float32 or all bfloat16 (--amp bf16: oneDNN accumulates in float32 and rounds the result to bfloat16, as XLA):
//   cpu_conv_forward          y  = conv(x, w)
//   cpu_conv_backward_data    dx = d conv / d x, given dy and w
//   cpu_conv_backward_weights dw = d conv / d w, given x and dy
// Attributes: strides [sh, sw], padding [top, bottom, left, right], and threads: how many OpenMP threads
// oneDNN may use (XLA runs the programs of several CPU devices at once, each its share of the cores).
// No dilation, no feature groups.
// oneDNN's primitives are JIT-compiled for the machine on first use of a shape and cached here by shape. XLA
// may run a cached primitive on any of its threads, and two at once: each execution gets its own scratchpad
// (scratchpad_mode::user), the mode in which oneDNN documents concurrent execution as safe.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <tuple>

#include <omp.h>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using dims = dnnl::memory::dims;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

enum class Kind { kForward, kBackwardData, kBackwardWeights };

// One convolution's geometry; the primitive cache's key.
struct Geometry {
  int64_t n, h, w, ci, oh, ow, co, kh, kw, sh, sw, pt, pb, pl, pr, threads;
  dt type;
  auto key() const {
    return std::make_tuple(n, h, w, ci, oh, ow, co, kh, kw, sh, sw, pt, pb, pl, pr, threads, static_cast<int>(type));
  }
  dnnl::memory::desc src() const { return {{n, ci, h, w}, type, tag::nhwc}; }
  dnnl::memory::desc weights() const { return {{co, ci, kh, kw}, type, tag::hwio}; }
  dnnl::memory::desc dst() const { return {{n, co, oh, ow}, type, tag::nhwc}; }
  dims strides() const { return {sh, sw}; }
  dims pad_before() const { return {pt, pl}; }
  dims pad_after() const { return {pb, pr}; }
};

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

// The weights in whatever layout oneDNN's fastest kernel for the shape wants (format "any"): with plain HWIO
// weights it picks a slow GEMM-based convolution. Weights are small, so each call reorders them.
dnnl::memory::desc any_weights(const Geometry& g) { return {{g.co, g.ci, g.kh, g.kw}, g.type, tag::any}; }

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return attr;
}

dnnl::convolution_forward::primitive_desc forward_desc(const Geometry& g) {
  return {cpu_engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
          g.src(), any_weights(g), g.dst(), g.strides(), g.pad_before(), g.pad_after(), user_scratchpad()};
}

// A primitive and, when its weights layout is not HWIO, the reorder between the two.
struct Plan {
  dnnl::primitive primitive;
  dnnl::memory::desc weights;  // the layout `primitive` reads or writes
  dnnl::reorder reorder;       // HWIO -> `weights` (forward, backward data) or back (backward weights)
  bool needs_reorder = false;
  dnnl::memory::desc scratchpad, reorder_scratchpad;
};

Plan make_plan(Kind kind, const Geometry& g) {
  Plan plan;
  dnnl::engine& engine = cpu_engine();
  if (kind == Kind::kForward) {
    auto pd = forward_desc(g);
    plan.primitive = dnnl::convolution_forward(pd);
    plan.weights = pd.weights_desc();
    plan.scratchpad = pd.scratchpad_desc();
  } else if (kind == Kind::kBackwardData) {
    dnnl::convolution_backward_data::primitive_desc pd(
        engine, dnnl::algorithm::convolution_direct, g.src(), any_weights(g), g.dst(), g.strides(),
        g.pad_before(), g.pad_after(), forward_desc(g), user_scratchpad());
    plan.primitive = dnnl::convolution_backward_data(pd);
    plan.weights = pd.weights_desc();
    plan.scratchpad = pd.scratchpad_desc();
  } else {
    dnnl::convolution_backward_weights::primitive_desc pd(
        engine, dnnl::algorithm::convolution_direct, g.src(), any_weights(g), g.dst(), g.strides(),
        g.pad_before(), g.pad_after(), forward_desc(g), user_scratchpad());
    plan.primitive = dnnl::convolution_backward_weights(pd);
    plan.weights = pd.diff_weights_desc();
    plan.scratchpad = pd.scratchpad_desc();
  }
  plan.needs_reorder = plan.weights != g.weights();
  if (plan.needs_reorder) {
    bool back = kind == Kind::kBackwardWeights;
    dnnl::reorder::primitive_desc pd(engine, back ? plan.weights : g.weights(), engine,
                                     back ? g.weights() : plan.weights, user_scratchpad());
    plan.reorder = dnnl::reorder(pd);
    plan.reorder_scratchpad = pd.scratchpad_desc();
  }
  return plan;
}

const Plan& cached_plan(Kind kind, const Geometry& g) {
  static std::mutex mutex;
  static std::map<std::tuple<int, decltype(g.key())>, std::unique_ptr<Plan>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& entry = cache[{static_cast<int>(kind), g.key()}];
  if (!entry) entry = std::make_unique<Plan>(make_plan(kind, g));
  return *entry;
}

ffi::Error check_attributes(ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding, int64_t threads) {
  if (strides.size() != 2 || padding.size() != 4 || threads < 1) {
    return ffi::Error::InvalidArgument("cpu_conv: strides must have 2 entries, padding 4, threads at least 1");
  }
  return ffi::Error::Success();
}

// oneDNN's type for three buffers of one type, float32 or bfloat16; none otherwise.
std::optional<dt> common_type(const ffi::AnyBuffer& a, const ffi::AnyBuffer& b, const ffi::AnyBuffer& c) {
  ffi::DataType type = a.element_type();
  if (b.element_type() != type || c.element_type() != type) return std::nullopt;
  if (type == ffi::DataType::F32) return dt::f32;
  if (type == ffi::DataType::BF16) return dt::bf16;
  return std::nullopt;
}

// x [N,H,W,Ci], w [KH,KW,Ci,Co], y [N,OH,OW,Co] -> g.
ffi::Error geometry(const ffi::AnyBuffer& x, const ffi::AnyBuffer& w, const ffi::AnyBuffer& y,
                    ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding, int64_t threads, Geometry& g) {
  if (auto error = check_attributes(strides, padding, threads); error.failure()) return error;
  auto type = common_type(x, w, y);
  if (!type) return ffi::Error::InvalidArgument("cpu_conv: the operands must be all float32 or all bfloat16");
  auto xs = x.dimensions(), ws = w.dimensions(), ys = y.dimensions();
  if (xs.size() != 4 || ws.size() != 4 || ys.size() != 4) {
    return ffi::Error::InvalidArgument("cpu_conv: NHWC activations and HWIO weights, all of rank 4");
  }
  g = {xs[0], xs[1], xs[2], xs[3], ys[1], ys[2], ys[3], ws[0], ws[1],
       strides[0], strides[1], padding[0], padding[1], padding[2], padding[3], threads, *type};
  return ffi::Error::Success();
}

ffi::Error run(Kind kind, const Geometry& g, void* src, void* weights, void* dst) {
  try {
    // oneDNN sizes its thread partitioning when a primitive is created and runs it with that many threads:
    // both happen under this thread's OpenMP setting, which is per calling thread.
    omp_set_num_threads(static_cast<int>(g.threads));
    const Plan& plan = cached_plan(kind, g);
    dnnl::engine& engine = cpu_engine();
    dnnl::stream stream(engine);
    dnnl::memory src_mem(g.src(), engine, src), hwio_mem(g.weights(), engine, weights), dst_mem(g.dst(), engine, dst);
    dnnl::memory weights_mem = plan.needs_reorder ? dnnl::memory(plan.weights, engine) : hwio_mem;
    dnnl::memory scratchpad(plan.scratchpad, engine);  // allocated here, freed at the end of the call
    auto reorder_weights = [&](dnnl::memory& from, dnnl::memory& to) {
      dnnl::memory reorder_scratchpad(plan.reorder_scratchpad, engine);
      plan.reorder.execute(stream, {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}, {DNNL_ARG_SCRATCHPAD, reorder_scratchpad}});
    };
    if (plan.needs_reorder && kind != Kind::kBackwardWeights) reorder_weights(hwio_mem, weights_mem);
    switch (kind) {
      case Kind::kForward:
        plan.primitive.execute(stream, {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_WEIGHTS, weights_mem}, {DNNL_ARG_DST, dst_mem},
                                        {DNNL_ARG_SCRATCHPAD, scratchpad}});
        break;
      case Kind::kBackwardData:
        plan.primitive.execute(stream, {{DNNL_ARG_DIFF_SRC, src_mem}, {DNNL_ARG_WEIGHTS, weights_mem},
                                        {DNNL_ARG_DIFF_DST, dst_mem}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
        break;
      case Kind::kBackwardWeights:
        plan.primitive.execute(stream, {{DNNL_ARG_SRC, src_mem}, {DNNL_ARG_DIFF_WEIGHTS, weights_mem},
                                        {DNNL_ARG_DIFF_DST, dst_mem}, {DNNL_ARG_SCRATCHPAD, scratchpad}});
        if (plan.needs_reorder) reorder_weights(weights_mem, hwio_mem);
        break;
    }
    stream.wait();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("cpu_conv: oneDNN: ") + e.what());
  }
  return ffi::Error::Success();
}

ffi::Error forward(ffi::AnyBuffer x, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> y, ffi::Span<const int64_t> strides,
                   ffi::Span<const int64_t> padding, int64_t threads) {
  Geometry g;
  if (auto error = geometry(x, w, *y, strides, padding, threads, g); error.failure()) return error;
  return run(Kind::kForward, g, x.untyped_data(), w.untyped_data(), y->untyped_data());
}

ffi::Error backward_data(ffi::AnyBuffer dy, ffi::AnyBuffer w, ffi::Result<ffi::AnyBuffer> dx,
                         ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding, int64_t threads) {
  Geometry g;
  if (auto error = geometry(*dx, w, dy, strides, padding, threads, g); error.failure()) return error;
  return run(Kind::kBackwardData, g, dx->untyped_data(), w.untyped_data(), dy.untyped_data());
}

ffi::Error backward_weights(ffi::AnyBuffer x, ffi::AnyBuffer dy, ffi::Result<ffi::AnyBuffer> dw,
                            ffi::Span<const int64_t> strides, ffi::Span<const int64_t> padding, int64_t threads) {
  Geometry g;
  if (auto error = geometry(x, *dw, dy, strides, padding, threads, g); error.failure()) return error;
  return run(Kind::kBackwardWeights, g, x.untyped_data(), dw->untyped_data(), dy.untyped_data());
}

}  // namespace

#define CPU_CONV_BINDING                                  \
  ffi::Ffi::Bind()                                        \
      .Arg<ffi::AnyBuffer>()                              \
      .Arg<ffi::AnyBuffer>()                              \
      .Ret<ffi::AnyBuffer>()                              \
      .Attr<ffi::Span<const int64_t>>("strides")          \
      .Attr<ffi::Span<const int64_t>>("padding")          \
      .Attr<int64_t>("threads")

XLA_FFI_DEFINE_HANDLER_SYMBOL(CpuConvForward, forward, CPU_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(CpuConvBackwardData, backward_data, CPU_CONV_BINDING);
XLA_FFI_DEFINE_HANDLER_SYMBOL(CpuConvBackwardWeights, backward_weights, CPU_CONV_BINDING);
