#include "cli/setup.h"

#include <fmt/format.h>
#include <sys/resource.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>

#include "peft/peft.hpp"

namespace peft::cli {

double peak_rss_mb() {
  // VmHWM belongs to this program's address space; getrusage's ru_maxrss survives exec and would
  // report a large parent (e.g. a Python process that launched us) instead.
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::strtod(line.c_str() + 6, nullptr) / 1024.0;
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_maxrss) / 1024.0;  // KiB on Linux
}

void append_yaml_config(const std::string& path, const CLI::App& app,
                        std::vector<std::string>& args) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw api::Error(fmt::format("{}: cannot read the run config", path));
  } catch (const YAML::Exception& e) {
    throw api::Error(fmt::format("{}: invalid YAML: {}", path, e.what()));
  }
  if (!root.IsMap())
    throw api::Error(fmt::format("{}: a run config must be a map of flag names to values", path));
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    const std::string flag = "--" + key;
    if (key == "config")
      throw api::Error(fmt::format("{}: \"config\" cannot be set from a run config", path));
    const CLI::Option* opt = nullptr;
    try {
      opt = app.get_option(flag);
    } catch (const CLI::OptionNotFound&) {
      throw api::Error(fmt::format(
          "{}: unknown setting \"{}\" (every key must be a flag of this command)", path, key));
    }
    if (std::find(args.begin(), args.end(), flag) != args.end()) continue;  // the command line wins
    const YAML::Node& v = kv.second;
    if (v.IsSequence()) {
      std::string joined;
      for (const auto& item : v) joined += (joined.empty() ? "" : ",") + item.as<std::string>();
      args.push_back(flag);
      args.push_back(joined);
    } else if (v.IsScalar()) {
      const std::string s = v.as<std::string>();
      if (opt->get_expected_min() == 0) {  // a flag
        if (s == "true" || s == "True" || s == "yes")
          args.push_back(flag);
        else if (s != "false" && s != "False" && s != "no")
          throw api::Error(fmt::format(
              "{}: \"{}\" is a switch; expected true or false, found \"{}\"", path, key, s));
      } else {
        args.push_back(flag);
        args.push_back(s);
      }
    } else {
      throw api::Error(fmt::format("{}: \"{}\" must be a value or a list", path, key));
    }
  }
}

}  // namespace peft::cli
