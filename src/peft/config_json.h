// Reading adapter_config.json values (LoRA, prompt learning) strictly. nlohmann's get<int>() of
// 1e30 is undefined behaviour and of 8.5 or 2^40 a silent truncation; get_or refuses every number
// that does not fit the field, naming the file and the key. Other type mismatches throw
// nlohmann::json::type_error, which the config readers turn into one Error.
#pragma once

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace peft::config_json {

template <typename T>
struct is_vector : std::false_type {};
template <typename E>
struct is_vector<std::vector<E>> : std::true_type {};
template <typename T>
struct is_string_map : std::false_type {};
template <typename V>
struct is_string_map<std::map<std::string, V>> : std::true_type {};

// v as T; `what` names the value in errors ("FILE: \"r\"").
template <typename T>
T as(const nlohmann::json& v, const std::string& what) {
  if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, std::string>) {
    return v.get<T>();
  } else if constexpr (std::is_integral_v<T>) {
    constexpr auto lo = std::numeric_limits<T>::min();
    constexpr auto hi = std::numeric_limits<T>::max();
    if (v.is_number_unsigned()) {
      if (v.get<uint64_t>() > uint64_t(hi)) fail("{} is {}, out of range", what, v.dump());
      return T(v.get<uint64_t>());
    }
    if (v.is_number_integer()) {
      const int64_t i = v.get<int64_t>();
      if (i < int64_t(lo) || i > int64_t(hi)) fail("{} is {}, out of range", what, i);
      return T(i);
    }
    if (v.is_number_float()) {
      // An integral float (8.0, as Python may write) is the integer; anything else is refused.
      const double d = v.get<double>();
      // 2^digits is the first value past hi, exactly representable as a double.
      if (!(d == std::trunc(d)) || d < double(lo) ||
          d >= std::ldexp(1.0, std::numeric_limits<T>::digits))
        fail("{} is {}, expected an integer", what, v.dump());
      return T(d);
    }
    fail("{} is {}, expected an integer", what, v.dump());
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!v.is_number()) fail("{} is {}, expected a number", what, v.dump());
    const double d = v.get<double>();
    if (!std::isfinite(d) || std::fabs(d) > double(std::numeric_limits<T>::max()))
      fail("{} is {}, out of range", what, v.dump());
    return T(d);
  } else if constexpr (is_vector<T>::value) {
    if (!v.is_array()) fail("{} is {}, expected a list", what, v.dump());
    T out;
    for (const nlohmann::json& e : v) out.push_back(as<typename T::value_type>(e, what));
    return out;
  } else {
    static_assert(is_string_map<T>::value, "config_json::as: unsupported type");
    if (!v.is_object()) fail("{} is {}, expected an object", what, v.dump());
    T out;
    for (const auto& [k, e] : v.items()) out[k] = as<typename T::mapped_type>(e, what);
    return out;
  }
}

// j[key] as T, or fallback when the key is absent or null.
template <typename T>
T get_or(const nlohmann::json& j, const std::string& source, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return as<T>(*it, source + ": \"" + key + "\"");
}

}  // namespace peft::config_json
