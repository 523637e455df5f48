// What the batch CLI writes, read back by the CLI tests: its JSON output
// lines, and a line's ids as `generate --tokens` prints them.
#pragma once

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace shell_test {

/// The JSON objects among the output lines (stdout and stderr together).
inline std::vector<nlohmann::json> json_lines(const std::string& out) {
  std::vector<nlohmann::json> lines;
  std::istringstream ss(out);
  for (std::string line; std::getline(ss, line);)
    if (!line.empty() && line[0] == '{') lines.push_back(nlohmann::json::parse(line));
  return lines;
}

/// An output line's "ids", comma-separated, as `generate --tokens` prints them.
inline std::string ids_of(const nlohmann::json& line) {
  std::string ids;
  for (const auto& t : line["ids"]) ids += (ids.empty() ? "" : ",") + std::to_string(t.get<int>());
  return ids;
}

}  // namespace shell_test
