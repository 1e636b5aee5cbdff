#include "kernels/dtype.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace chai {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
    case DType::kI32: return 4;
    case DType::kI64: return 8;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "fp32";
    case DType::kF16: return "fp16";
    case DType::kBF16: return "bf16";
    case DType::kI32: return "i32";
    case DType::kI64: return "i64";
  }
  return "?";
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  if (name == "fp32" || name == "F32" || name == "float32") return DType::kF32;
  if (name == "fp16" || name == "F16" || name == "float16") return DType::kF16;
  if (name == "bf16" || name == "BF16" || name == "bfloat16") return DType::kBF16;
  if (name == "i32" || name == "I32") return DType::kI32;
  if (name == "i64" || name == "I64") return DType::kI64;
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype '", name, "' (expected fp32, fp16 or bf16)"));
}

uint16_t FloatToHalf(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  uint32_t sign = (bits >> 16) & 0x8000u;
  uint32_t abs = bits & 0x7FFFFFFFu;
  if (abs >= 0x7F800000u) {  // inf or nan
    return static_cast<uint16_t>(sign | 0x7C00u | (abs > 0x7F800000u ? 0x200u : 0u));
  }
  if (abs >= 0x477FF000u) return static_cast<uint16_t>(sign | 0x7C00u);  // rounds to inf
  if (abs < 0x38800000u) {  // subnormal or zero in half
    if (abs < 0x33000000u) return static_cast<uint16_t>(sign);
    uint32_t exp = abs >> 23;
    uint32_t mant = (abs & 0x7FFFFFu) | 0x800000u;
    uint32_t shift = 126 - exp;  // half subnormals count units of 2^-24
    uint32_t half_mant = mant >> shift;
    // Round to nearest even on the bits shifted out.
    uint32_t rem = mant & ((1u << shift) - 1);
    uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half_mant & 1u))) ++half_mant;
    return static_cast<uint16_t>(sign | half_mant);
  }
  uint32_t rounded = abs + 0xFFFu + ((abs >> 13) & 1u);
  return static_cast<uint16_t>(sign | ((rounded - 0x38000000u) >> 13));
}

namespace {

// One (from, to) pair per instantiation: the element loop has no switch in it, so it inlines the
// conversions (a per-element switch on both dtypes made fp32 -> fp16 cost ~12 ns an element,
// which dominated loading large models in half precision).
template <typename Src, typename Dst, typename Convert>
void ConvertLoop(const void* src, void* dst, size_t n, Convert convert) {
  const Src* in = static_cast<const Src*>(src);
  Dst* out = static_cast<Dst*>(dst);
  for (size_t i = 0; i < n; ++i) out[i] = convert(in[i]);
}

template <typename Src, typename Load>
void ConvertFrom(const void* src, void* dst, DType to, size_t n, Load load) {
  switch (to) {
    case DType::kF32: return ConvertLoop<Src, float>(src, dst, n, [&](Src x) { return load(x); });
    case DType::kF16: return ConvertLoop<Src, uint16_t>(src, dst, n, [&](Src x) { return FloatToHalf(load(x)); });
    case DType::kBF16:
      return ConvertLoop<Src, uint16_t>(src, dst, n, [&](Src x) { return FloatToBFloat16(load(x)); });
    default: return;
  }
}

}  // namespace

void ConvertFloats(const void* src, DType from, void* dst, DType to, size_t n) {
  if (from == to) {
    std::memcpy(dst, src, n * DTypeSize(from));
    return;
  }
  switch (from) {
    case DType::kF32: return ConvertFrom<float>(src, dst, to, n, [](float x) { return x; });
    case DType::kF16: return ConvertFrom<uint16_t>(src, dst, to, n, [](uint16_t x) { return HalfToFloat(x); });
    case DType::kBF16: return ConvertFrom<uint16_t>(src, dst, to, n, [](uint16_t x) { return BFloat16ToFloat(x); });
    default: return;
  }
}

}  // namespace chai
