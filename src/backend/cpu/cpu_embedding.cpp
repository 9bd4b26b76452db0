// embedding: a row gather from the token table. Every id is checked before anything is written, so a bad id
// leaves out untouched and the error can name it.
#include <algorithm>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_check.h"

namespace paradit {

void CpuBackend::embedding(const Tensor& out, const Tensor& table, const std::vector<int32_t>& ids) {
  const char* op = "embedding";
  cpu::require_f32_rows(op, "out", out);
  cpu::require_f32_rows(op, "table", table);
  PD_REQUIRE(out.dim() == 3, op, ": out ", out.desc(), " must be [B, S, D]");
  PD_REQUIRE(table.dim() == 2, op, ": table ", table.desc(), " must be [V, D]");
  const int64_t B = out.size(0), S = out.size(1), D = out.size(2), V = table.size(0);
  PD_REQUIRE(table.size(1) == D, op, ": table ", table.desc(), " has D = ", table.size(1), " but out ",
             out.desc(), " has D = ", D);
  PD_REQUIRE(int64_t(ids.size()) == B * S, op, ": ", ids.size(), " ids for out ", out.desc(), " (B·S = ", B * S,
             ")");
  for (size_t i = 0; i < ids.size(); ++i)
    PD_REQUIRE(ids[i] >= 0 && ids[i] < V, op, ": id ", ids[i], " at position ", i, " (batch ", int64_t(i) / S,
               ", token ", int64_t(i) % S, ") is outside the table ", table.desc(), " [0, ", V, ")");
  PD_REQUIRE(!cpu::may_overlap(out, table), op, ": out ", out.desc(), " overlaps table ", table.desc());
  if (out.numel() == 0) return;
  const cpu::Rows orows(out);
  const float* tb = table.data_as<float>();
  const int64_t ts = table.stride(0);
  cpu::parallel_for(threads_, B * S, D, [&](int64_t r) {
    const float* src = tb + int64_t(ids[size_t(r)]) * ts;
    std::copy(src, src + D, orows.row(r));
  });
}

}  // namespace paradit
