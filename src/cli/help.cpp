#include "cli/help.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <sstream>

namespace peft::cli {
namespace {

// The order a user meets the commands in: make or inspect a model, look at its tokens, train,
// measure, use, ship.
constexpr std::array kWorkflowOrder = {"init", "info",     "tokenize", "detokenize", "train",
                                       "eval", "generate", "classify", "merge",      "export"};

bool starts_with_range_words(const std::string& s) {
  for (const char* w : {"≥", "≤", ">", "<", "between"})
    if (s.rfind(w, 0) == 0) return true;
  return false;
}

class HelpFormatter : public CLI::Formatter {
 public:
  HelpFormatter() { column_width(36); }

  // "INT:≥ 1" (CLI11's type:validator) becomes "INT (≥ 1)"; the default moves to the description.
  std::string make_option_opts(const CLI::Option* opt) const override {
    if (!opt->get_option_text().empty() || opt->get_type_size() == 0)
      return CLI::Formatter::make_option_opts(opt);
    std::string type = opt->get_type_name();
    if (const size_t colon = type.find(':');
        colon != std::string::npos && starts_with_range_words(type.substr(colon + 1)))
      type = type.substr(0, colon) + " (" + type.substr(colon + 1) + ")";
    std::string out = type.empty() ? "" : " " + type;
    if (opt->get_expected_max() == CLI::detail::expected_max_vector_size) out += " ...";
    if (opt->get_required()) out += " (required)";
    return out;
  }

  std::string make_option_desc(const CLI::Option* opt) const override {
    std::string desc = opt->get_description();
    if (opt->get_type_size() != 0 && !opt->get_default_str().empty())
      desc += (desc.empty() ? "" : " ") + std::string("[default: ") + opt->get_default_str() + "]";
    return desc;
  }

  // CLI11 pads with setw, which counts bytes: "≥" is three. Pad by characters instead.
  std::string make_option(const CLI::Option* opt, bool is_positional) const override {
    const std::string left = "  " + make_option_name(opt, is_positional) + make_option_opts(opt);
    size_t width = 0;
    for (unsigned char c : left) width += (c & 0xC0) != 0x80;  // UTF-8 lead bytes
    const size_t column = get_column_width();
    std::string out = left;
    if (width >= column)
      out += "\n" + std::string(column, ' ');
    else
      out += std::string(column - width, ' ');
    for (char c : make_option_desc(opt)) {
      out += c;
      if (c == '\n') out += std::string(column, ' ');
    }
    return out + "\n";
  }

  // One blank line between the usage line, the positionals and each group (CLI11 puts none
  // after the usage line and two between groups).
  std::string make_group(std::string group, bool is_positional,
                         std::vector<const CLI::Option*> opts) const override {
    std::string out = group + ":\n";
    for (const CLI::Option* opt : opts) out += make_option(opt, is_positional);
    return out;
  }
  std::string make_usage(const CLI::App* app, std::string name) const override {
    return CLI::Formatter::make_usage(app, std::move(name)) + "\n";
  }
  std::string make_positionals(const CLI::App* app) const override {
    const std::string out = CLI::Formatter::make_positionals(app);
    return out.empty() ? out : out + "\n";
  }

  // The last line of every command's help points back to the overview.
  std::string make_footer(const CLI::App* app) const override {
    std::string footer = CLI::Formatter::make_footer(app);
    if (app->get_parent() != nullptr) footer += "See 'peft help' for the other commands.\n";
    return footer;
  }
};

}  // namespace

std::shared_ptr<CLI::Formatter> make_help_formatter() {
  return std::make_shared<HelpFormatter>();
}

std::vector<const CLI::App*> commands_in_workflow_order(const CLI::App& app) {
  std::vector<const CLI::App*> all = app.get_subcommands([](const CLI::App*) { return true; });
  auto rank = [](const CLI::App* c) {
    const auto at = std::find(kWorkflowOrder.begin(), kWorkflowOrder.end(), c->get_name());
    return size_t(at - kWorkflowOrder.begin());  // unlisted commands: kWorkflowOrder.size()
  };
  std::stable_sort(all.begin(), all.end(),
                   [&](const CLI::App* a, const CLI::App* b) { return rank(a) < rank(b); });
  return all;
}

std::string top_level_usage(const CLI::App& app) {
  std::ostringstream out;
  out << kVersion << ": " << app.get_description() << "\n\n"
      << "Usage: peft <command> [flags]\n"
      << "       peft help <command>\n\n"
      << "Commands:\n";
  for (const CLI::App* c : commands_in_workflow_order(app)) {
    if (c->get_group().empty()) continue;  // hidden (test tools)
    out << fmt::format("  {:<12}{}\n", c->get_name(), c->get_description());
  }
  out << fmt::format("  {:<12}{}\n", "help", "this overview, or 'peft help <command>'")
      << fmt::format("  {:<12}{}\n", "version", "print the version (also --version)") << "\n"
      << "Every command takes --threads N (default: $OMP_NUM_THREADS if set, else all cores);\n"
      << "most take --json for one JSON object on stdout. Exit status: 0 success, 1 the work\n"
      << "failed, 2 bad usage.\n\n"
      << "Run 'peft <command> --help' (or 'peft help <command>') for a command's flags.\n";
  return out.str();
}

size_t edit_distance(const std::string& a, const std::string& b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1, 0));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[n][m];
}

std::string nearest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const std::string& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_d) best = c, best_d = d;
  }
  // Near enough: at most 2 edits, and fewer than half the letters (so "xy" suggests nothing).
  const size_t letters = std::max(word.size(), best.size());
  if (best_d == 0 || best_d > 2 || 2 * best_d >= letters) return "";
  return best;
}

std::vector<std::string> long_flag_names(const CLI::App& command) {
  std::vector<std::string> names;
  for (const CLI::Option* o : command.get_options())
    for (const std::string& n : o->get_lnames()) names.push_back("--" + n);
  return names;
}

}  // namespace peft::cli
