// tech-llama-58m quantized at 2.5 and 4.0 bits per weight decodes the same greedy tokens through
// Vulkan as on the CPU for the five reference prompts, 48 tokens each, up to a printed near tie
// (tests/greedy_models.h). On a GPU the tiled matvecs are the split matvec, with integer dot
// products where the device has them; the CPU drivers' default path is checked as well when the
// device is a CPU. The models are not in git: without them (CI), or without a Vulkan device, the
// binary exits 77 (skipped).
#include <doctest/doctest.h>

#include "tests/greedy_models.h"
#include "tests/vulkan/vulkan_test_util.h"

namespace sbits::kernels::test {
namespace {

const bool kHaveModels = sbits::test::exit_unless_tl_models();

}  // namespace

TEST_CASE("tech-llama-58m quantized: Vulkan greedy tokens equal the CPU's (up to a printed near tie)") {
  REQUIRE(kHaveModels);
  const VulkanStats s = vulkan_stats(*make_vk());
  std::printf("vulkan: integer dot products %s\n", s.integer_dot ? "on" : "off");
  sbits::test::check_tl_greedy(make_vk, "vulkan");
}

}  // namespace sbits::kernels::test
