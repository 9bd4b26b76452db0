// Device helpers shared by the kernels: element conversions to and from f32, and vector loads/stores that move
// up to 16 bytes per instruction (the width at which Hopper's memory system is fully used).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace paradit::cuda {

using bf16 = __nv_bfloat16;
using fp8 = __nv_fp8_e4m3;

// Elements travel as their raw bits packed in 32-bit words: with structs of the CUDA bf16 class the compiler was
// seen to store a 16-byte vector as eight 2-byte stores; words make the vector accesses explicit.
template <typename T>
struct Bits;
template <>
struct Bits<float> {
  using type = uint32_t;
  static __device__ __forceinline__ float to_f32(type b) { return __uint_as_float(b); }
  static __device__ __forceinline__ type from_f32(float v) { return __float_as_uint(v); }
};
template <>
struct Bits<bf16> {
  using type = uint16_t;
  static __device__ __forceinline__ float to_f32(type b) { return __uint_as_float(uint32_t(b) << 16); }
  static __device__ __forceinline__ type from_f32(float v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
};
template <>
struct Bits<__half> {
  using type = uint16_t;
  static __device__ __forceinline__ float to_f32(type b) { return __half2float(__ushort_as_half(b)); }
  static __device__ __forceinline__ type from_f32(float v) { return __half_as_ushort(__float2half_rn(v)); }
};
template <>
struct Bits<fp8> {
  using type = uint8_t;
  static __device__ __forceinline__ float to_f32(type b) {
    return __half2float(__half(__nv_cvt_fp8_to_halfraw(__nv_fp8_storage_t(b), __NV_E4M3)));
  }
  static __device__ __forceinline__ type from_f32(float v) {
    return type(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));  // saturating, round to nearest even
  }
};

// N raw elements moved as one access; alignment is the access width (at most 16 bytes).
template <typename U, int N>
struct alignas(sizeof(U) * N) RawPack {
  U v[N];
};

// N consecutive elements of T, loaded or stored with accesses of min(16, N·sizeof(T)) bytes (so p must be aligned
// to that). The elements are held packed in 32-bit words whenever they fill whole words: built word by word,
// the vector leaves as one 16-byte store (held as an array of 16-bit elements, the compiler was seen to split
// such a store into 2- and 4-byte pieces). Splitting load() from to_f32() lets a kernel put several loads in
// flight before it uses any.
template <typename T, int N>
struct Vec {
  using B = Bits<T>;
  using U = typename B::type;
  static constexpr int kBytes = N * int(sizeof(T));
  static constexpr bool kPacked = kBytes >= 4 && kBytes % 4 == 0;
  using Word = std::conditional_t<kPacked, uint32_t, U>;
  static constexpr int kPerWord = kPacked ? 4 / int(sizeof(T)) : 1;
  static constexpr int kWords = N / kPerWord;
  static constexpr int kChunk = kWords * int(sizeof(Word)) > 16 ? 16 / int(sizeof(Word)) : kWords;
  static_assert(kWords % kChunk == 0, "vector width must split into 16-byte accesses");
  Word w[kWords];

  // Whole words go through CUDA's uint4/uint2 vector types (loads) or PTX vector stores: one access each.
  __device__ __forceinline__ void load(const T* p) {
#pragma unroll
    for (int c = 0; c < kWords / kChunk; ++c) {
      if constexpr (kPacked && kChunk == 4) {
        const uint4 u = reinterpret_cast<const uint4*>(p)[c];
        w[4 * c] = u.x, w[4 * c + 1] = u.y, w[4 * c + 2] = u.z, w[4 * c + 3] = u.w;
      } else if constexpr (kPacked && kChunk == 2) {
        const uint2 u = reinterpret_cast<const uint2*>(p)[c];
        w[2 * c] = u.x, w[2 * c + 1] = u.y;
      } else {
        const RawPack<Word, kChunk> u = reinterpret_cast<const RawPack<Word, kChunk>*>(p)[c];
#pragma unroll
        for (int i = 0; i < kChunk; ++i) w[kChunk * c + i] = u.v[i];
      }
    }
  }
  __device__ __forceinline__ void store(T* p) const {
#pragma unroll
    for (int c = 0; c < kWords / kChunk; ++c) {
      // Stores are spelled out in PTX: in some kernels (layer_norm's) the compiler split even a uint4 store into
      // four 4-byte stores. All our vectors live in global memory, whose generic addresses st.global takes.
      if constexpr (kPacked && kChunk == 4) {
        asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(reinterpret_cast<uint4*>(p) + c),
                     "r"(w[4 * c]), "r"(w[4 * c + 1]), "r"(w[4 * c + 2]), "r"(w[4 * c + 3])
                     : "memory");
      } else if constexpr (kPacked && kChunk == 2) {
        asm volatile("st.global.v2.u32 [%0], {%1, %2};" ::"l"(reinterpret_cast<uint2*>(p) + c), "r"(w[2 * c]),
                     "r"(w[2 * c + 1])
                     : "memory");
      } else {
        RawPack<Word, kChunk> u;
#pragma unroll
        for (int i = 0; i < kChunk; ++i) u.v[i] = w[kChunk * c + i];
        reinterpret_cast<RawPack<Word, kChunk>*>(p)[c] = u;
      }
    }
  }
  __device__ __forceinline__ void to_f32(float (&out)[N]) const {
#pragma unroll
    for (int k = 0; k < kWords; ++k) {
#pragma unroll
      for (int e = 0; e < kPerWord; ++e) out[k * kPerWord + e] = B::to_f32(U(w[k] >> (8 * int(sizeof(T)) * e)));
    }
  }
  __device__ __forceinline__ void from_f32(const float (&in)[N]) {
#pragma unroll
    for (int k = 0; k < kWords; ++k) {
      Word word = 0;
#pragma unroll
      for (int e = 0; e < kPerWord; ++e) word |= Word(B::from_f32(in[k * kPerWord + e])) << (8 * int(sizeof(T)) * e);
      w[k] = word;
    }
  }
};

template <int N, typename T>
__device__ __forceinline__ void load_f32(const T* p, float (&out)[N]) {
  Vec<T, N> v;
  v.load(p);
  v.to_f32(out);
}

template <int N, typename T>
__device__ __forceinline__ void store_f32(T* p, const float (&in)[N]) {
  Vec<T, N> v;
  v.from_f32(in);
  v.store(p);
}

// Sum over the `width` lanes of an aligned group of lanes (width a power of two ≤ 32); mask names them.
template <int kWidth>
__device__ __forceinline__ float group_sum(float v, unsigned mask) {
#pragma unroll
  for (int off = kWidth / 2; off > 0; off /= 2) v += __shfl_xor_sync(mask, v, off);
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32); `scratch` holds 32 floats of shared memory. Every
// thread gets the same result. Ends with a barrier, so scratch can be reused by the next call.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = group_sum<32>(v, 0xffffffffu);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < warps; ++w) total += scratch[w];  // same order in every thread: identical results
  __syncthreads();
  return total;
}

}  // namespace paradit::cuda
