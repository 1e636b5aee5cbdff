// Element types and host conversions between them.
#ifndef CHAI_KERNELS_DTYPE_H_
#define CHAI_KERNELS_DTYPE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace chai {

enum class DType { kF32, kF16, kBF16, kI32, kI64 };

size_t DTypeSize(DType dtype);
const char* DTypeName(DType dtype);  // "fp32", "fp16", "bf16", "i32", "i64"
// Parses the names of DTypeName and the safetensors spellings (F32, F16, BF16, I32, I64).
absl::StatusOr<DType> ParseDType(absl::string_view name);

// IEEE half and bfloat16 <-> float, round to nearest even.
inline float HalfToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3FF;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7F800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t FloatToHalf(float f);

inline float BFloat16ToFloat(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t FloatToBFloat16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x7FFFFFu)) return static_cast<uint16_t>((bits >> 16) | 0x40);
  uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

// Converts n elements from src (of type from) to dst (of type to). Only float types.
void ConvertFloats(const void* src, DType from, void* dst, DType to, size_t n);

}  // namespace chai

#endif  // CHAI_KERNELS_DTYPE_H_
