// Short, readable text for numbers a person reads in a legend, a table cell
// or a promotion reason: learning rates first of all. A log10 grid point
// such as 10^-2.5 is stored as 0.0031622776601683794 (its exact double, so
// that runs round-trip); shown to a reader it is "10^-2.5".
//
// One formatter for the dashboard, the reports' legends and `sweep promote`
// (STYLE.md "one vocabulary"). Pure functions; thread-safe.
#pragma once

#include <string>

namespace madam {

// "1e-2" for a power of ten (and "1", "10", "100" for 10^0..10^2),
// "10^-0.5" / "10^-3.5" for a half decade, whole numbers as themselves up
// to 10^6 ("3", "128"), otherwise three significant digits without trailing
// zeros: "0.0025", "0.0123", and below 10^-3 in exponent form ("3e-4",
// "1.23e-5"). "nan", "inf", "-inf" for
// non-finite values. Never more than 3 significant digits, so never 17.
std::string ShortNumber(double value);

}  // namespace madam
