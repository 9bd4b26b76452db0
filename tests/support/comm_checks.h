// Collective checks shared by the tests of every host transport (in-process threads, MPI processes): each is
// one rank's part, called with that rank's communicator on every rank of a world of any size; failures are gtest
// failures of the calling rank.
#pragma once

#include "paradit/comm/communicator.h"

namespace paradit::test {

// A value that says who sent it to whom and which element it is; exact in f32 (and in bf16 for small ints).
float code(int from, int to, int64_t i);
Tensor host(const Shape& shape, DType dt = DType::kF32);
// Fills t (contiguous f32) with code(from, to, i) over its elements.
void fill_code(const Tensor& t, int from, int to);
// Checks a (possibly strided) f32 view element by element against code(from, to, i) in row-major order.
void expect_code(const Tensor& t, int from, int to);

// One rank's part of each check.
void all_to_all_even(Communicator& c);
void all_to_all_uneven_inner_dim(Communicator& c);
void all_to_all_v_strided_bf16(Communicator& c);
void all_gather_uneven_and_in_place(Communicator& c);
void reduce_scatter_uneven(Communicator& c);
void all_reduce_f32_and_bf16(Communicator& c);
void broadcast_from_every_root(Communicator& c);
void send_recv_ring_and_self(Communicator& c);

}  // namespace paradit::test
