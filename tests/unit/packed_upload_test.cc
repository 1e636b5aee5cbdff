// PackedUpload (the decode step's metadata in one copy): every view holds its array, starts on a
// 64-byte boundary of the buffer and keeps its address across refills of the same lengths (what
// a recorded graph reads); a refill of other lengths is refused and changes nothing.
#include "runtime/packed_upload.h"

#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace chai {
namespace {

Tensor Ints(const std::vector<int32_t>& v) { return Tensor::FromInts(v, {static_cast<int64_t>(v.size())}); }

std::vector<int32_t> Values(const Tensor& t) {
  return std::vector<int32_t>(t.data<int32_t>(), t.data<int32_t>() + t.numel());
}

std::vector<std::vector<int32_t>> RandomArrays(const std::vector<int>& lengths, std::mt19937* rng) {
  std::vector<std::vector<int32_t>> arrays;
  for (int n : lengths) {
    auto& a = arrays.emplace_back();
    for (int i = 0; i < n; ++i) a.push_back(static_cast<int32_t>((*rng)() % 100000) - 50000);
  }
  return arrays;
}

TEST(PackedUpload, ViewsHoldTheArraysAndStayPutAcrossRefills) {
  std::mt19937 rng(4);
  const std::vector<int> lengths = {3, 0, 17, 1, 16, 33, 5};
  PackedUpload upload;
  std::vector<Tensor> views(lengths.size());
  std::vector<Tensor*> outs;
  for (Tensor& v : views) outs.push_back(&v);
  std::vector<const void*> first_addresses;
  for (int round = 0; round < 3; ++round) {
    const auto arrays = RandomArrays(lengths, &rng);
    std::vector<Tensor> hosts;
    for (const auto& a : arrays) hosts.push_back(Ints(a));
    std::vector<const Tensor*> host_ptrs;
    for (const Tensor& h : hosts) host_ptrs.push_back(&h);
    ASSERT_TRUE(upload.Send(host_ptrs, Device::kCpu, outs).ok()) << "round " << round;
    ASSERT_TRUE(upload.sent());
    const char* base = static_cast<const char*>(views[0].raw());
    for (size_t i = 0; i < views.size(); ++i) {
      EXPECT_EQ(views[i].dtype(), DType::kI32);
      EXPECT_EQ(views[i].shape(), std::vector<int64_t>{lengths[i]});
      EXPECT_EQ(Values(views[i]), arrays[i]) << "array " << i << " round " << round;
      EXPECT_EQ((static_cast<const char*>(views[i].raw()) - base) % 64, 0) << "array " << i;
      EXPECT_NE(views[i].raw(), hosts[i].raw()) << "a view must not alias the caller's array";
      if (round == 0) {
        first_addresses.push_back(views[i].raw());
      } else {
        EXPECT_EQ(views[i].raw(), first_addresses[i]) << "array " << i << " moved in round " << round;
      }
    }
  }
}

TEST(PackedUpload, RefusesOtherLengthsAndKeepsTheViews) {
  PackedUpload upload;
  Tensor a = Ints({1, 2, 3}), b = Ints({4});
  Tensor va, vb;
  const Tensor* hosts[] = {&a, &b};
  Tensor* outs[] = {&va, &vb};
  ASSERT_TRUE(upload.Send(hosts, Device::kCpu, outs).ok());
  Tensor longer = Ints({7, 8});
  const Tensor* changed[] = {&a, &longer};
  const absl::Status s = upload.Send(changed, Device::kCpu, outs);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_EQ(Values(va), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(Values(vb), (std::vector<int32_t>{4}));
}

TEST(PackedUpload, RejectsNonInt32OrMismatchedCounts) {
  PackedUpload upload;
  Tensor f = Tensor::Zeros({2}, DType::kF32), a = Ints({1});
  Tensor v;
  const Tensor* floats[] = {&f};
  Tensor* one[] = {&v};
  EXPECT_EQ(upload.Send(floats, Device::kCpu, one).code(), absl::StatusCode::kInvalidArgument);
  const Tensor* two[] = {&a, &a};
  EXPECT_EQ(upload.Send(two, Device::kCpu, one).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(upload.sent());
}

}  // namespace
}  // namespace chai
