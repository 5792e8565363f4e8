// YAML run configs (--config RUN.yaml, declared in cli/setup.h), apart from the rest of setup.cpp
// so that the fuzz build (fuzz/) reads them without linking models.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cli/setup.h"
#include "core/error.h"

namespace peft::cli {

void append_yaml_config(const std::string& path, const CLI::App& app,
                        std::vector<std::string>& args) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    fail("{}: cannot read the run config", path);
  } catch (const YAML::Exception& e) {
    fail("{}: invalid YAML: {}", path, e.what());
  }
  if (!root.IsMap()) fail("{}: a run config must be a map of flag names to values", path);
  // Every as<std::string>() below is of a scalar, checked first: yaml-cpp throws its own
  // exception types (not peft::Error) when asked to convert a map or a list.
  for (const auto& kv : root) {
    if (!kv.first.IsScalar())
      fail("{}: line {}: a key must be a flag name, found a {}", path, kv.first.Mark().line + 1,
           kv.first.IsSequence() ? "list"
           : kv.first.IsMap()    ? "map"
                                 : "null");
    const std::string key = kv.first.as<std::string>();
    const std::string flag = "--" + key;
    if (key == "config") fail("{}: \"config\" cannot be set from a run config", path);
    const CLI::Option* opt = nullptr;
    try {
      opt = app.get_option(flag);
    } catch (const CLI::OptionNotFound&) {
      fail("{}: unknown setting \"{}\" (every key must be a flag of this command)", path, key);
    }
    if (std::find(args.begin(), args.end(), flag) != args.end()) continue;  // the command line wins
    const YAML::Node& v = kv.second;
    if (v.IsSequence()) {
      std::string joined;
      for (const auto& item : v) {
        if (!item.IsScalar())
          fail("{}: \"{}\" must be a value or a list of values; an item is a {}", path, key,
               item.IsSequence() ? "list"
               : item.IsMap()    ? "map"
                                 : "null");
        joined += (joined.empty() ? "" : ",") + item.as<std::string>();
      }
      args.push_back(flag);
      args.push_back(joined);
    } else if (v.IsScalar()) {
      const std::string s = v.as<std::string>();
      if (opt->get_expected_min() == 0) {  // a flag
        if (s == "true" || s == "True" || s == "yes")
          args.push_back(flag);
        else if (s != "false" && s != "False" && s != "no")
          fail("{}: \"{}\" is a switch; expected true or false, found \"{}\"", path, key, s);
      } else {
        args.push_back(flag);
        args.push_back(s);
      }
    } else {
      fail("{}: \"{}\" must be a value or a list", path, key);
    }
  }
}

}  // namespace peft::cli
