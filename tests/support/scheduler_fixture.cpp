#include "scheduler_fixture.h"

#include <fstream>
#include <stdexcept>
#include <string>

#include "test_util.h"

namespace paradit::test {

const nlohmann::json& scheduler_fixture() {
  static const nlohmann::json doc = [] {
    const std::string path = fixtures_dir() + "/scheduler/scheduler.json";
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    return nlohmann::json::parse(in);
  }();
  return doc;
}

}  // namespace paradit::test
