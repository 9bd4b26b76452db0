// tests/fixtures/scheduler/scheduler.json (made by tools/make_scheduler_fixtures.py): diffusers' schedules, the
// latent packing and the noise references the scheduler and latents tests compare against.
#pragma once

#include <nlohmann/json.hpp>

namespace paradit::test {

// Parsed once; throws std::runtime_error naming the file when it cannot be opened.
const nlohmann::json& scheduler_fixture();

}  // namespace paradit::test
