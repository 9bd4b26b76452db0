#include "cli/args.h"

#include <sstream>

#include "paradit/core/status.h"

namespace paradit::cli {

namespace {
long parse_long(const std::string& opt, const std::string& v) {
  size_t used = 0;
  long r = 0;
  try {
    r = std::stol(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  PD_REQUIRE(used == v.size() && !v.empty(), "option --", opt, " expects an integer, got '", v, "'");
  return r;
}
}  // namespace

void ArgParser::add(Opt opt) { opts_.push_back(std::move(opt)); }

void ArgParser::flag(const std::string& name, const std::string& s, bool* out, const std::string& help) {
  add({name, s, help, "", false, [out](const std::string&) { *out = true; }});
}

void ArgParser::option(const std::string& name, const std::string& s, std::string* out, const std::string& help) {
  add({name, s, help, *out, true, [out](const std::string& v) { *out = v; }});
}

void ArgParser::option(const std::string& name, const std::string& s, int* out, const std::string& help) {
  add({name, s, help, std::to_string(*out), true, [out, name](const std::string& v) { *out = int(parse_long(name, v)); }});
}

void ArgParser::option(const std::string& name, const std::string& s, float* out, const std::string& help) {
  std::ostringstream d;
  d << *out;
  add({name, s, help, d.str(), true, [out, name](const std::string& v) {
         size_t used = 0;
         float r = 0;
         try {
           r = std::stof(v, &used);
         } catch (const std::exception&) {
           used = 0;
         }
         PD_REQUIRE(used == v.size() && !v.empty(), "option --", name, " expects a number, got '", v, "'");
         *out = r;
       }});
}

void ArgParser::option(const std::string& name, const std::string& s, std::vector<int>* out, const std::string& help) {
  std::string d;
  for (size_t i = 0; i < out->size(); ++i) d += (i ? "," : "") + std::to_string((*out)[i]);
  add({name, s, help, d, true, [out, name](const std::string& v) {
         out->clear();
         std::stringstream ss(v);
         std::string item;
         while (std::getline(ss, item, ',')) out->push_back(int(parse_long(name, item)));
         PD_REQUIRE(!out->empty(), "option --", name, " expects a comma-separated list of integers");
       }});
}

bool ArgParser::parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") return false;
    std::string value;
    bool has_inline = false;
    if (a.rfind("--", 0) == 0) {
      const size_t eq = a.find('=');
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
        has_inline = true;
      }
    }
    const Opt* match = nullptr;
    for (const auto& o : opts_) {
      if (a == "--" + o.name || (!o.short_name.empty() && a == "-" + o.short_name)) match = &o;
    }
    PD_REQUIRE(match, "unknown option '", a, "' for 'paradit ", command_, "' (see --help)");
    if (!match->takes_value) {
      PD_REQUIRE(!has_inline, "option --", match->name, " takes no value");
      match->set("");
      continue;
    }
    if (!has_inline) {
      PD_REQUIRE(i + 1 < argc, "option --", match->name, " needs a value");
      value = argv[++i];
    }
    match->set(value);
  }
  return true;
}

std::string ArgParser::usage() const {
  std::ostringstream os;
  os << "usage: paradit " << command_ << " [options]\n" << summary_ << "\n\noptions:\n";
  for (const auto& o : opts_) {
    std::string left = "  " + (o.short_name.empty() ? std::string("    ") : "-" + o.short_name + ", ") + "--" + o.name;
    if (o.takes_value) left += " V";
    os << left << std::string(left.size() < 30 ? 30 - left.size() : 1, ' ') << o.help;
    if (o.takes_value && !o.default_text.empty()) os << " (default " << o.default_text << ")";
    os << "\n";
  }
  return os.str();
}

}  // namespace paradit::cli
