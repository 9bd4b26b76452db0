#include "comm_checks.h"

#include <algorithm>

#include "test_util.h"

namespace paradit::test {

float code(int from, int to, int64_t i) { return float(from * 10000 + to * 1000 + i); }

Tensor host(const Shape& shape, DType dt) { return Tensor::empty(shape, dt, cpu_allocator()); }

void fill_code(const Tensor& t, int from, int to) {
  float* p = t.data_as<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = code(from, to, i);
}

void expect_code(const Tensor& t, int from, int to) {
  Tensor c = to_contiguous_f32(t);
  const float* p = c.data_as<float>();
  int bad = 0;
  for (int64_t i = 0; i < c.numel() && bad < 5; ++i)
    if (p[i] != code(from, to, i)) {
      ADD_FAILURE() << "piece " << from << "->" << to << " element " << i << ": " << p[i]
                    << " != " << code(from, to, i);
      ++bad;
    }
}

void all_to_all_even(Communicator& c) {
  const int me = c.rank(), n = c.size();
  Tensor send = host({n * 3, 4}), recv = host({n * 3, 4});
  for (int p = 0; p < n; ++p) fill_code(send.slice(0, p * 3, 3), me, p);
  c.all_to_all(recv, send);
  for (int p = 0; p < n; ++p) expect_code(recv.slice(0, p * 3, 3), p, me);
}

void all_to_all_uneven_inner_dim(Communicator& c) {
  // Rank a sends (a + 2b) % 3 columns to rank b (zero included), along dim 1 of a [2, *, 3] tensor.
  auto count = [](int from, int to) -> int64_t { return (from + 2 * to) % 3; };
  const int me = c.rank(), n = c.size();
  Counts sc(n), rc(n);
  for (int p = 0; p < n; ++p) {
    sc[p] = count(me, p);
    rc[p] = count(p, me);
  }
  int64_t st = 0, rt = 0;
  for (int p = 0; p < n; ++p) st += sc[p], rt += rc[p];
  Tensor send = host({2, st, 3}), recv = poisoned_host({2, rt, 3});
  int64_t off = 0;
  for (int p = 0; p < n; ++p) {
    Tensor piece = host({2, sc[p], 3});
    fill_code(piece, me, p);
    for (int b = 0; b < 2; ++b)
      std::copy(piece.data_as<float>() + b * sc[p] * 3, piece.data_as<float>() + (b + 1) * sc[p] * 3,
                send.data_as<float>() + (b * st + off) * 3);
    off += sc[p];
  }
  c.all_to_all(recv, send, 1, sc, rc);
  off = 0;
  for (int p = 0; p < n; ++p) {
    expect_code(recv.slice(1, off, rc[p]), p, me);
    off += rc[p];
  }
}

void all_to_all_v_strided_bf16(Communicator& c) {
  const int me = c.rank(), n = c.size();
  Tensor send = host({1, 2, n, 4}, DType::kBF16), recv = host({1, 2 * n, 1, 4}, DType::kBF16);
  std::vector<Tensor> s(n), r(n);
  for (int p = 0; p < n; ++p) {
    Tensor vals = host({1, 2, 1, 4});
    fill_code(vals, me, p);
    s[p] = send.slice(2, p, 1);
    for (int64_t i = 0; i < 8; ++i)
      s[p].data_as<uint16_t>()[(i / 4) * s[p].stride(1) + i % 4] = f32_to_bf16(vals.data_as<float>()[i]);
    r[p] = recv.slice(1, 2 * p, 2);
  }
  c.all_to_all_v(r, s);
  for (int p = 0; p < n; ++p) {
    Tensor got = to_contiguous_f32(r[p]);
    for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(got.data_as<float>()[i], bf16_to_f32(f32_to_bf16(code(p, me, i))));
  }
}

void all_gather_uneven_and_in_place(Communicator& c) {
  const int me = c.rank(), n = c.size();
  Counts counts(n);
  int64_t total = 0;
  for (int p = 0; p < n; ++p) total += counts[p] = p % 3 + 1;
  // Along dim 1 of [2, *, 5], into a separate buffer.
  Tensor send = host({2, counts[me], 5}), recv = poisoned_host({2, total, 5});
  fill_code(send, me, 0);
  c.all_gather(recv, send, 1, counts);
  int64_t off = 0;
  for (int p = 0; p < n; ++p) {
    expect_code(recv.slice(1, off, counts[p]), p, 0);
    off += counts[p];
  }
  // In place: the contribution is this rank's own piece of the output.
  Tensor buf = poisoned_host({total, 3});
  off = 0;
  for (int p = 0; p < me; ++p) off += counts[p];
  Tensor mine = buf.slice(0, off, counts[me]);
  fill_code(mine, me, 1);
  c.all_gather(buf, mine, 0, counts);
  off = 0;
  for (int p = 0; p < n; ++p) {
    expect_code(buf.slice(0, off, counts[p]), p, 1);
    off += counts[p];
  }
}

void reduce_scatter_uneven(Communicator& c) {
  const int me = c.rank(), n = c.size();
  Counts counts(n);
  int64_t total = 0;
  for (int p = 0; p < n; ++p) total += counts[p] = (p * 2) % 3 + 1;
  Tensor send = host({total, 3});
  for (int64_t i = 0; i < send.numel(); ++i) send.data_as<float>()[i] = float((me + 1) * (i + 1));
  Tensor recv = poisoned_host({counts[me], 3});
  c.reduce_scatter(recv, send, 0, counts);
  int64_t off = 0;
  for (int p = 0; p < me; ++p) off += counts[p];
  const float ranks_sum = float(n * (n + 1) / 2);
  for (int64_t i = 0; i < recv.numel(); ++i)
    EXPECT_EQ(recv.data_as<float>()[i], ranks_sum * float(off * 3 + i + 1)) << "element " << i;
}

void all_reduce_f32_and_bf16(Communicator& c) {
  const int me = c.rank(), n = c.size();
  Tensor t = host({7, 9});
  for (int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = float(me * 100 + i);
  c.all_reduce(t);
  for (int64_t i = 0; i < t.numel(); ++i) EXPECT_EQ(t.data_as<float>()[i], float(100 * n * (n - 1) / 2 + n * i));
  Tensor b = host({5}, DType::kBF16);
  for (int64_t i = 0; i < 5; ++i) b.data_as<uint16_t>()[i] = f32_to_bf16(float(me + i));
  c.all_reduce(b);
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(bf16_to_f32(b.data_as<uint16_t>()[i]), float(n * (n - 1) / 2 + n * i));
}

void broadcast_from_every_root(Communicator& c) {
  for (int root = 0; root < c.size(); ++root) {
    Tensor t = host({3, 4});
    fill_code(t, c.rank(), 0);
    c.broadcast(t, root);
    expect_code(t, root, 0);
  }
}

void send_recv_ring_and_self(Communicator& c) {
  const int n = c.size(), me = c.rank(), next = (me + 1) % n, prev = (me + n - 1) % n;
  // Messages of a different size from each rank, several rounds in flight order.
  for (int round = 0; round < 3; ++round) {
    Tensor a = host({me + 1, 2}), b = host({me + 2});
    fill_code(a, me, round);
    fill_code(b, me, round + 5);
    Tensor ra = poisoned_host({prev + 1, 2}), rb = poisoned_host({prev + 2});
    auto req = c.start({P2POp::send(a, next), P2POp::send(b, next), P2POp::recv(ra, prev), P2POp::recv(rb, prev)});
    req->wait();
    expect_code(ra, prev, round);
    expect_code(rb, prev, round + 5);
  }
  Tensor self = host({4}), got = poisoned_host({4});
  fill_code(self, me, 9);
  c.start({P2POp::recv(got, me), P2POp::send(self, me)})->wait();
  expect_code(got, me, 9);
}

}  // namespace paradit::test
