#include "runtime/gather_results.h"

#include <cstring>
#include <string>

#include "paradit/core/allocator.h"
#include "paradit/core/status.h"
#include "paradit/pipeline/latents.h"

namespace paradit::runtime {

namespace {

// A share as bytes, written and read in the same order.
struct Bytes {
  std::vector<uint8_t> data;
  size_t at = 0;

  template <typename T>
  void put(const T* p, size_t n) {
    // resize + memcpy rather than insert: GCC 12 warns falsely (stringop-overflow) on an insert of a few bytes.
    const size_t end = data.size();
    data.resize(end + n * sizeof(T));
    if (n > 0) std::memcpy(data.data() + end, p, n * sizeof(T));
  }
  template <typename T>
  void put(T v) { put(&v, 1); }
  template <typename T>
  void get(T* p, size_t n) {
    PD_CHECK(at + n * sizeof(T) <= data.size(), "a rank's share of the results is truncated");
    std::memcpy(p, data.data() + at, n * sizeof(T));
    at += n * sizeof(T);
  }
  template <typename T>
  T get() {
    T v{};
    get(&v, 1);
    return v;
  }
};

// Host transports move one-byte elements as they are.
Tensor bytes_tensor(void* p, size_t n) { return Tensor::borrow(p, {int64_t(n)}, DType::kF8E4M3, Device::cpu()); }

Bytes pack(const FluxRankResult& part, int64_t per_image, int steps) {
  const FluxResult& r = part.result;
  Bytes b;
  b.put(r.max_sequence_length);
  b.put(r.timings.encode_s);
  b.put(r.timings.denoise_s);
  b.put(r.timings.decode_s);
  b.put(uint64_t(r.warnings.size()));
  for (const std::string& w : r.warnings) {
    b.put(uint64_t(w.size()));
    b.put(w.data(), w.size());
  }
  b.put(uint64_t(part.batch_indices.size()));
  for (size_t j = 0; j < part.batch_indices.size(); ++j) {
    const Rgb8Image& img = r.images[j];
    b.put(int64_t(part.batch_indices[j]));
    b.put(r.seeds[j]);
    b.put(img.height);
    b.put(img.width);
    b.put(img.channels);
    b.put(uint64_t(img.pixels.size()));
    b.put(img.pixels.data(), img.pixels.size());
    b.put(r.latents.data_as<float>() + int64_t(j) * per_image, size_t(per_image));
    b.put(r.timings.step_s.data() + j * size_t(steps), size_t(steps));
  }
  return b;
}

FluxRankResult unpack(Bytes& b, const FluxRequest& request, int64_t per_image, int steps) {
  FluxRankResult part;
  FluxResult& r = part.result;
  r.steps = steps;
  r.max_sequence_length = b.get<decltype(r.max_sequence_length)>();
  r.timings.encode_s = b.get<double>();
  r.timings.denoise_s = b.get<double>();
  r.timings.decode_s = b.get<double>();
  r.warnings.resize(b.get<uint64_t>());
  for (std::string& w : r.warnings) {
    w.resize(b.get<uint64_t>());
    b.get(w.data(), w.size());
  }
  const auto count = int64_t(b.get<uint64_t>());
  if (count > 0)
    r.latents = Tensor::empty(flux_packed_latent_shape(int(count), request.height, request.width), DType::kF32,
                              cpu_allocator());
  r.timings.step_s.resize(size_t(count) * size_t(steps));
  for (int64_t j = 0; j < count; ++j) {
    part.batch_indices.push_back(int(b.get<int64_t>()));
    r.seeds.push_back(b.get<uint64_t>());
    Rgb8Image img;
    img.height = b.get<int64_t>();
    img.width = b.get<int64_t>();
    img.channels = b.get<int64_t>();
    img.pixels.resize(b.get<uint64_t>());
    b.get(img.pixels.data(), img.pixels.size());
    r.images.push_back(std::move(img));
    b.get(r.latents.data_as<float>() + j * per_image, size_t(per_image));
    b.get(r.timings.step_s.data() + size_t(j) * size_t(steps), size_t(steps));
  }
  return part;
}

}  // namespace

std::vector<FluxRankResult> gather_rank_results(Communicator& host, const FluxRequest& request, FluxRankResult mine) {
  const Shape packed = flux_packed_latent_shape(1, request.height, request.width);
  const int64_t per_image = packed[1] * packed[2];
  const int steps = mine.result.steps;
  const int n = host.size();
  // Sizes first (every rank's, so each knows what comes), then the shares to rank 0.
  Bytes own = pack(mine, per_image, steps);
  std::vector<uint64_t> sizes(static_cast<size_t>(n));
  uint64_t my_size = own.data.size();
  std::vector<Tensor> size_pieces;
  for (int p = 0; p < n; ++p) size_pieces.push_back(bytes_tensor(&sizes[size_t(p)], sizeof(uint64_t)));
  host.all_gather_v(size_pieces, bytes_tensor(&my_size, sizeof my_size));

  std::vector<FluxRankResult> all;
  if (host.rank() != 0) {
    host.send(bytes_tensor(own.data.data(), own.data.size()), 0);
    return all;
  }
  std::vector<Bytes> shares(static_cast<size_t>(n));
  std::vector<P2POp> recvs;
  for (int p = 1; p < n; ++p) {
    shares[size_t(p)].data.resize(sizes[size_t(p)]);
    recvs.push_back(P2POp::recv(bytes_tensor(shares[size_t(p)].data.data(), sizes[size_t(p)]), p));
  }
  host.start(std::move(recvs))->wait();
  all.push_back(std::move(mine));
  for (int p = 1; p < n; ++p) all.push_back(unpack(shares[size_t(p)], request, per_image, steps));
  return all;
}

}  // namespace paradit::runtime
