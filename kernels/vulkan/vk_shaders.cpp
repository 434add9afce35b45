// The embedded SPIR-V of every shader family (generated at build time from shaders/*.comp).
#include "kernels/vulkan/vk_device.h"

#include "attention_sg0_spv.h"
#include "attention_sg1_spv.h"
#include "attention_prefill_sg0_spv.h"
#include "attention_prefill_sg1_spv.h"
#include "copy_sg0_spv.h"
#include "copy_sg1_spv.h"
#include "elementwise_sg0_spv.h"
#include "elementwise_sg1_spv.h"
#include "kv_store_sg0_spv.h"
#include "kv_store_sg1_spv.h"
#include "matmul_coopmat_sg0_spv.h"
#include "matmul_coopmat_sg1_spv.h"
#include "matmul_dense_sg0_spv.h"
#include "matmul_dense_sg1_spv.h"
#include "matvec_dot_sg0_spv.h"
#include "matvec_dot_sg1_spv.h"
#include "matvec_tiled_sg0_spv.h"
#include "matvec_tiled_sg1_spv.h"
#include "matvec_dense_sg0_spv.h"
#include "matvec_dense_sg1_spv.h"
#include "rmsnorm_sg0_spv.h"
#include "rmsnorm_sg1_spv.h"
#include "rope_sg0_spv.h"
#include "rope_sg1_spv.h"
#include "rope_store_sg0_spv.h"
#include "rope_store_sg1_spv.h"
#include "rows_sg0_spv.h"
#include "rows_sg1_spv.h"
#include "tiled_sg0_spv.h"
#include "tiled_sg1_spv.h"
#include "topk_sg0_spv.h"
#include "topk_sg1_spv.h"
#include "xq_sg0_spv.h"
#include "xq_sg1_spv.h"

namespace sbits::kernels::vk {

ShaderCode shader_code(const std::string& family, bool subgroups) {
#define SBITS_VK_SHADER(name)                                                                    \
  if (family == #name)                                                                           \
    return subgroups ? ShaderCode{k_spv_##name##_sg1, sizeof(k_spv_##name##_sg1) / 4}           \
                     : ShaderCode{k_spv_##name##_sg0, sizeof(k_spv_##name##_sg0) / 4};
  SBITS_VK_SHADER(attention)
  SBITS_VK_SHADER(attention_prefill)
  SBITS_VK_SHADER(copy)
  SBITS_VK_SHADER(elementwise)
  SBITS_VK_SHADER(kv_store)
  SBITS_VK_SHADER(matmul_coopmat)
  SBITS_VK_SHADER(matmul_dense)
  SBITS_VK_SHADER(matvec_dot)
  SBITS_VK_SHADER(matvec_tiled)
  SBITS_VK_SHADER(matvec_dense)
  SBITS_VK_SHADER(rmsnorm)
  SBITS_VK_SHADER(rope)
  SBITS_VK_SHADER(rope_store)
  SBITS_VK_SHADER(rows)
  SBITS_VK_SHADER(tiled)
  SBITS_VK_SHADER(topk)
  SBITS_VK_SHADER(xq)
#undef SBITS_VK_SHADER
  fail("pipeline", "no shader family '", family, "' is embedded in this build");
}

uint32_t shader_writes(const std::string& family, const std::vector<uint32_t>& spec) {
  // As declared in shaders/*.comp (the bindings not marked readonly that are stored to).
  if (family == "elementwise") return !spec.empty() && spec[0] == 0 ? 1u << 0 : 1u << 2;  // add: A; swiglu: C
  if (family == "rope") return 1u << 0;
  if (family == "rope_store") return (1u << 0) | (1u << 1) | (1u << 3) | (1u << 4);
  if (family == "kv_store") return (1u << 2) | (1u << 3);
  if (family == "attention") return (1u << 4) | (1u << 5) | (1u << 6) | (1u << 7);
  if (family == "attention_prefill") return 1u << 4;
  if (family == "tiled") return 1u << 3;
  if (family == "matvec_tiled" || family == "matvec_dot") return (1u << 3) | (1u << 4) | (1u << 5);
  if (family == "xq") return !spec.empty() && spec[0] == 0 ? 1u << 3 : (1u << 2) | (1u << 3);  // convert: Q only
  if (family == "topk") return (1u << 1) | (1u << 2);
  if (family == "copy") return 1u << 1;
  if (family == "rows" || family == "rmsnorm" || family == "matvec_dense" || family == "matmul_dense" ||
      family == "matmul_coopmat")
    return 1u << 2;
  fail("pipeline", "no write set is known for shader family '", family, "'");
}

}  // namespace sbits::kernels::vk
