// Deferred ops: fewer, bigger launches for decode without changing the op interface.
//
// A decode step of a Llama layer calls matmul(wq, h), matmul(wk, h), matmul(wv, h) and later
// matmul(w_gate, h), matmul(w_up, h): matvecs that read the same x, each too small to fill the
// GPU for long (a 4096 x 4096 one is launch- and ramp-bound). And the x of those matmuls, and
// of w_down, comes straight from an rmsnorm or a swiglu, which convert_x then reads again to
// make the f16 copy. So the backend holds these ops back (not recorded yet):
//  - decode matmuls on tiled weights (variants 4 and 5) that read the same x with the same n
//    join a pending group of up to kTiledMmaMaxGroup, launched as one grid over all their
//    block rows (tiled_mma.cu group_member);
//  - an rmsnorm or swiglu waits; if the matmuls flushed next read its output, it is recorded
//    fused with their x's conversion (rmsnorm_convert / swiglu_convert), else as itself.
//  - the RMSNorm fold: an rmsnorm of the residual x that a variant-6 matvec just updated (wo,
//    w_down with accumulate), whose output h only variant-6 matvecs read next (q, k, v; gate,
//    up), runs as no kernel of its own. The producer matvec's finish also writes h = x w (the
//    norm's weight, not yet divided by the rms), its digits, and sums of x^2 per 32 rows; the
//    consumer matvecs read those digits as their x, form 1 / rms from the sums, scale their
//    results by it (the matvec is linear in x) and scale h in place, so h holds the norm's
//    output after them. Two launches per layer fewer. Not exact: the digits come from f32 h
//    rather than from the f16 of the normalized h (tests/cuda: within the f16 rounding of x);
//    consumers with f16 tiles, which read x's f16 copy, are not folded.
// Exact semantics: every public op, read, write, top_k and synchronize flushes first (so
// anything that touches a pending op's buffers runs after it), and DeviceState::drain does
// too (resources destroyed or scratch grown while something is pending). A group never holds
// two matmuls with the same y, nor one whose y is the group's x. Results are those of the
// separate launches: each member's tiles, split-K order and epilogue are unchanged, and the
// fused kernels compute the f32 output and the f16 copy with convert_x's arithmetic.
#include <algorithm>
#include <tuple>
#include <utility>

#include "kernels/cuda/cuda_backend_impl.h"

namespace sbits::kernels::cuda {

CudaBackend::~CudaBackend() {
  try {
    std::lock_guard<std::recursive_mutex> lock(st_->mutex);
    flush_pending();
  } catch (...) {  // a destructor cannot report; resources still drain as they go
  }
  st_->before_drain = nullptr;
}

bool CudaBackend::deferrable(const CudaWeight& w, int n) const {
  return fusing() && w.type == WeightType::tiled && w.mma_ok && n >= 1 && n <= kMatvecMaxRows &&
         w.tiled.tile_rows == 64 && w.tiled.offs16 != nullptr;
}

// An rmsnorm of x into out may fold into the pending matmul that wrote x (see the top).
bool CudaBackend::norm_fold_candidate(const CudaBuffer& x, const CudaBuffer& out, const CudaWeight& w, int n) const {
  const Pending& p = pending_;
  // Not when the matmul itself reads an rmsnorm fold's digits: it would overwrite them while read.
  if (!fusing() || !norm_fold_ || n != 1 || p.count != 1 || p.n != 1 || p.after != PendingElem::none ||
      p.consumer_of == PendingElem::rmsnorm || !p.mm[0].accumulate || p.mm[0].y != &x || &out == &x)
    return false;
  const CudaWeight& prod = *p.mm[0].w;
  // Widths up to 16384: tiled_dp4a.cu stages the sums of squares (one per 32) in shared memory.
  return w.type != WeightType::tiled && w.rows == 1 && w.cols == prod.rows && w.cols % 128 == 0 && w.cols <= 16384 &&
         tiled_variant(prod.tiled, 1) == kTiledDp4aVariant;
}

// swiglu of the pending gate / up pair's outputs may fold into them (see the top); its output
// may be either input (each element is read and written by one thread).
bool CudaBackend::swiglu_fold_candidate(const CudaBuffer& gate, const CudaBuffer& up, size_t count) const {
  const Pending& p = pending_;
  // Not when the pair itself reads a swiglu fold's digits: it would overwrite them while read.
  if (!fusing() || !swiglu_fold_ || p.count != 2 || p.n != 1 || p.after != PendingElem::none ||
      p.consumer_of == PendingElem::swiglu || p.mm[0].y != &gate || p.mm[1].y != &up || p.mm[0].accumulate ||
      p.mm[1].accumulate)
    return false;
  const CudaWeight &wg = *p.mm[0].w, &wu = *p.mm[1].w;
  return wg.rows == wu.rows && size_t(wg.rows) == count && wg.rows % 128 == 0 &&
         tiled_variant(wg.tiled, 1) == kTiledDp4aVariant;
}

// A matmul that may read the pending fold's output: variant 6, and no f16 tiles (they read x's
// f16 copy, which the folds do not make).
bool CudaBackend::fold_consumer_ok(const CudaWeight& w, const CudaBuffer& x, int n) const {
  const Pending& p = pending_;
  const int64_t width = p.after == PendingElem::rmsnorm ? p.after_rms.width : p.after_swi.count;
  return n == 1 && !w.f16_tiles && &x == p.after_out && w.cols == width &&
         tiled_variant(w.tiled, 1) == kTiledDp4aVariant;
}

// Records p's matmuls (with the elementwise op before them) without folding the op after them,
// which stays pending as one that may fuse with the conversion of the next matmul's x. Nothing
// is pending while recording, so a drain (scratch growth) cannot record it before the matmuls.
void CudaBackend::record_group_alone(Pending p) {
  Pending next;
  next.elem = p.after;
  next.rms = p.after_rms;
  next.swi = p.after_swi;
  next.elem_out = p.after_out;
  p.after = PendingElem::none;
  pending_ = Pending{};
  record_group(p);
  pending_ = next;
}

void CudaBackend::defer_matmul(const CudaWeight& w, const CudaBuffer& x, int n, CudaBuffer& y, bool accumulate) {
  Pending& p = pending_;
  if (p.after != PendingElem::none) {
    if (!fold_consumer_ok(w, x, n)) {
      record_group_alone(p);
    } else {
      const Pending producer = p;
      pending_ = Pending{};
      record_group(producer, &producer);
      if (producer.after == PendingElem::rmsnorm) ++st_->queue->stats.norm_folds;
      else ++st_->queue->stats.swiglu_folds;
      p.x = &x;
      p.n = n;
      p.consumer_of = producer.after;
      p.fold = producer.after_rms;
      p.mm[p.count++] = PendingMatmul{&w, &y, accumulate};
      return;
    }
  }
  bool joins = p.count > 0 && p.count < kTiledMmaMaxGroup && p.x == &x && p.n == n &&
               p.mm[0].w->cols == w.cols && (p.consumer_of == PendingElem::none || !w.f16_tiles);
  for (int i = 0; joins && i < p.count; ++i) joins = p.mm[i].y != &y;
  if (p.count > 0 && !joins) flush_pending();
  if (p.count == 0) {
    p.x = &x;
    p.n = n;
  }
  p.mm[p.count++] = PendingMatmul{&w, &y, accumulate};
}

void CudaBackend::flush_pending() {
  if (pending_.count == 0 && pending_.elem == PendingElem::none) return;
  // Taken out first: recording may drain (scratch growth), and the drain calls back here.
  const Pending p = pending_;
  pending_ = Pending{};
  if (p.count == 0) {
    record_elem(p, 0, false);
    return;
  }
  if (p.after != PendingElem::none) {  // no matmul came to fold into: the op after, by itself
    record_group_alone(p);
    const Pending e = pending_;
    pending_ = Pending{};
    record_elem(e, 0, false);
    return;
  }
  record_group(p);
}

void CudaBackend::record_elem(const Pending& p, int64_t ld, bool xq) {
  if (p.elem == PendingElem::none) return;
  st_->queue->begin_op(0);
  if (ld == 0) {
    if (p.elem == PendingElem::rmsnorm)
      record(run<RmsnormArgs, launch_rmsnorm>, p.rms);
    else
      record(run<SwigluArgs, launch_swiglu>, p.swi);
    return;
  }
  // Fused: the f16 copy and sums of the output, in the scratch half_x would use, and the
  // half_x cache keyed to the output's current version so the matmul finds them.
  const CudaBuffer& out = *p.elem_out;
  const int64_t cols = p.mm[0].w->cols;
  const char* op = "matmul";
  void* xh = st_->x_half.ensure(*st_, checked_mul(op, p.n, ld * 2), "matmul x (f16)");
  // Variant 6 reads the digits, not the sums.
  auto* sums = xq ? nullptr
                  : static_cast<float*>(st_->x_sum.ensure(*st_, checked_mul(op, (ld + 127) / 128, kXSumStride * 4),
                                                          "matmul x sums"));
  const auto [q, qmeta] = xq ? xq_scratch(ld) : std::pair<uint8_t*, float*>{nullptr, nullptr};
  auto conv = zeroed<ConvertXArgs>();
  conv.xq = q;
  conv.xq_meta = qmeta;
  conv.x = out.ptr();
  conv.out = xh;
  conv.sums = sums;
  conv.n = p.n;
  conv.cols = cols;
  conv.ld = ld;
  st_->queue->begin_op(0);  // the ensures may have drained: the record starts afresh
  if (p.elem == PendingElem::rmsnorm) {
    auto a = zeroed<RmsnormConvertArgs>();
    a.norm = p.rms;
    a.conv = conv;
    record(run<RmsnormConvertArgs, launch_rmsnorm_convert>, a);
  } else {
    auto a = zeroed<SwigluConvertArgs>();
    a.swiglu = p.swi;
    a.conv = conv;
    record(run<SwigluConvertArgs, launch_swiglu_convert>, a);
  }
  half_x_ = HalfX{&out, out.version, p.n, cols, ld, false, !xq, xq, xh};
}

// fold_from: the pending state whose op after the matmuls (p's) folds into them.
void CudaBackend::record_group(const Pending& p, const Pending* fold_from) {
  const CudaWeight& w0 = *p.mm[0].w;
  const TiledDev& t0 = w0.tiled;
  const int64_t ld = t0.tiles_c * 128;  // x padded to whole tiles: padding columns meet zeros
  auto a = zeroed<TiledMmaArgs>();
  a.variant = tiled_variant(t0, p.n);  // members share cols and n: the same for all
  int64_t slot_bytes = 0, block_rows = 0;
  for (int i = 0; i < p.count; ++i) {
    const CudaWeight& w = *p.mm[i].w;
    a.members[i] = TiledMmaMember{w.tiled, p.mm[i].y->ptr(), p.mm[i].accumulate, block_rows};
    block_rows += (w.rows + 63) / 64;
    slot_bytes = std::max(slot_bytes, w.slot_bytes);
  }
  a.group = p.count;
  // May drain to grow scratch: nothing of p is recorded yet, and p is no longer pending.
  tiled_split(slot_bytes, t0.tiles_c, block_rows, p.count > 1 ? block_rows * 64 : t0.rows, p.n, a);
  // The elementwise op first (it came first), fused when its output is this x.
  const bool fuse_elem = p.elem != PendingElem::none && p.elem_out == p.x && ld <= kFusedConvertMaxLd &&
                         (p.elem == PendingElem::rmsnorm ? p.rms.n == p.n && p.rms.width == w0.cols
                                                         : p.swi.count == int64_t(p.n) * w0.cols);
  const bool xq = a.variant == kTiledDp4aVariant;
  record_elem(p, fuse_elem ? ld : 0, xq);
  a.t = t0;
  a.y = a.members[0].y;
  a.accumulate = a.members[0].accumulate;
  if (p.consumer_of == PendingElem::rmsnorm) {  // x: the producer's digits of h (no f16 tiles here)
    std::tie(a.xq, a.xq_meta) = fold_scratch(ld);
    a.ss_in = fold_sums(ld);
    a.ss_count = ld / 32;
    a.norm_width = p.fold.width;
    a.norm_eps = p.fold.eps;
    a.norm_h = p.fold.out;
  } else if (p.consumer_of == PendingElem::swiglu) {
    std::tie(a.xq, a.xq_meta) = swiglu_scratch(ld);
  } else {
    a.x_half = half_x(*p.x, p.n, t0.cols, ld, false, !xq, xq);
    if (xq)
      std::tie(a.xq, a.xq_meta) = xq_scratch(ld);
    else
      a.x_sums = static_cast<const float*>(st_->x_sum.ensure(*st_, 0, "matmul x sums"));
  }
  if (fold_from && fold_from->after == PendingElem::rmsnorm) {
    const RmsnormArgs& r = fold_from->after_rms;  // width: whole tiles (norm_fold_candidate)
    a.norm_w = r.w;
    a.norm_wtype = r.wtype;
    a.norm_h = r.out;
    std::tie(a.xq_out, a.xq_meta_out) = fold_scratch(r.width);
    a.ss_out = fold_sums(r.width);
  } else if (fold_from && fold_from->after == PendingElem::swiglu) {
    const SwigluArgs& sw = fold_from->after_swi;  // count: whole tiles (swiglu_fold_candidate)
    a.swi_gate = sw.gate;
    a.swi_up = sw.up;
    a.swi_out = sw.out;
    std::tie(a.swi_xq, a.swi_meta) = swiglu_scratch(sw.count);
    a.swi_counters = static_cast<uint32_t*>(
        st_->swiglu_counters.ensure(*st_, size_t(sw.count / 64) * 4, "swiglu fold counters"));
  }
  a.ld = ld;
  a.n = p.n;
  st_->queue->begin_op(0);
  record(run<TiledMmaArgs, launch_tiled_mma>, a);
}

}  // namespace sbits::kernels::cuda
