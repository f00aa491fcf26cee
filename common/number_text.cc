#include "common/number_text.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace madam {
namespace {

// Relative closeness, for values that went through pow(10, x).
bool Near(double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max(std::fabs(a), std::fabs(b)); }

// "%.2e" text with its trailing zeros and exponent padding dropped:
// "3.00e-04" -> "3e-4", "2.50e+07" -> "2.5e7".
std::string CompactExponent(const char* text) {
  std::string s(text);
  const size_t e = s.find('e');
  if (e == std::string::npos) return s;
  std::string mantissa = s.substr(0, e);
  std::string exponent = s.substr(e + 1);
  if (mantissa.find('.') != std::string::npos) {
    while (!mantissa.empty() && mantissa.back() == '0') mantissa.pop_back();
    if (!mantissa.empty() && mantissa.back() == '.') mantissa.pop_back();
  }
  const bool negative = !exponent.empty() && exponent[0] == '-';
  if (!exponent.empty() && (exponent[0] == '-' || exponent[0] == '+')) exponent.erase(0, 1);
  while (exponent.size() > 1 && exponent[0] == '0') exponent.erase(0, 1);
  return mantissa + "e" + (negative ? "-" : "") + exponent;
}

}  // namespace

std::string ShortNumber(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == 0) return "0";
  char buf[48];
  const double magnitude = std::fabs(value);
  const std::string sign = value < 0 ? "-" : "";
  if (value == std::floor(value) && magnitude < 1e6) {
    std::snprintf(buf, sizeof buf, "%.0f", value);
    return buf;
  }
  const double exponent = std::log10(magnitude);
  const double whole = std::round(exponent);
  if (Near(magnitude, std::pow(10.0, whole))) {
    std::snprintf(buf, sizeof buf, "%se%d", sign.empty() ? "1" : "-1", static_cast<int>(whole));
    return buf;
  }
  const double half = std::round(exponent * 2) / 2;
  if (Near(magnitude, std::pow(10.0, half)) && std::fabs(half) < 100) {
    std::snprintf(buf, sizeof buf, "%s10^%.1f", sign.c_str(), half);
    return buf;
  }
  // Three significant digits, trailing zeros dropped: "3e-4", "2.5e-5",
  // "0.0025", "0.125", "0.00316".
  if (magnitude < 1e-3 || magnitude >= 1e6) {
    std::snprintf(buf, sizeof buf, "%.2e", value);
    return CompactExponent(buf);
  }
  std::snprintf(buf, sizeof buf, "%.3g", value);
  return buf;
}

}  // namespace madam
