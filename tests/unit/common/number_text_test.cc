// ShortNumber: the one readable form of lrs and other numbers people read
// in legends, table cells and promotion reasons (common/number_text.h).
#include "common/number_text.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace madam {
namespace {

TEST(ShortNumberTest, PowersOfTenAreExponents) {
  EXPECT_EQ(ShortNumber(0.01), "1e-2");
  EXPECT_EQ(ShortNumber(1e-4), "1e-4");
  EXPECT_EQ(ShortNumber(0.1), "1e-1");
  EXPECT_EQ(ShortNumber(std::pow(10.0, -3.0)), "1e-3");
  EXPECT_EQ(ShortNumber(-0.001), "-1e-3");
  EXPECT_EQ(ShortNumber(1e7), "1e7");
}

TEST(ShortNumberTest, HalfDecadesOfALogGridReadAsPowers) {
  // What {log10: {from: -4, to: 0, count: 9}} stores.
  EXPECT_EQ(ShortNumber(std::pow(10.0, -0.5)), "10^-0.5");
  EXPECT_EQ(ShortNumber(std::pow(10.0, -2.5)), "10^-2.5");
  EXPECT_EQ(ShortNumber(0.0031622776601683794), "10^-2.5");
  EXPECT_EQ(ShortNumber(std::pow(10.0, -3.5)), "10^-3.5");
  EXPECT_EQ(ShortNumber(std::pow(10.0, 0.5)), "10^0.5");
}

TEST(ShortNumberTest, WholeNumbersStayWhole) {
  EXPECT_EQ(ShortNumber(0), "0");
  EXPECT_EQ(ShortNumber(1), "1");
  EXPECT_EQ(ShortNumber(3), "3");
  EXPECT_EQ(ShortNumber(10), "10");
  EXPECT_EQ(ShortNumber(128), "128");
  EXPECT_EQ(ShortNumber(-2), "-2");
}

TEST(ShortNumberTest, OtherValuesKeepThreeSignificantDigits) {
  EXPECT_EQ(ShortNumber(0.0025), "0.0025");
  EXPECT_EQ(ShortNumber(0.125), "0.125");
  EXPECT_EQ(ShortNumber(12.3456), "12.3");
  EXPECT_EQ(ShortNumber(3e-4), "3e-4");
  EXPECT_EQ(ShortNumber(2.5e-5), "2.5e-5");
  EXPECT_EQ(ShortNumber(1.23456e-5), "1.23e-5");
  EXPECT_EQ(ShortNumber(0.1 + 0.2), "0.3");
}

TEST(ShortNumberTest, NeverSeventeenDigits) {
  for (int i = 0; i <= 80; ++i) {
    const double v = std::pow(10.0, -4.0 + i * 0.05);
    EXPECT_LE(ShortNumber(v).size(), 8u) << v << " -> " << ShortNumber(v);
  }
}

TEST(ShortNumberTest, NonFiniteValuesAreNamed) {
  EXPECT_EQ(ShortNumber(std::numeric_limits<double>::quiet_NaN()), "nan");
  EXPECT_EQ(ShortNumber(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(ShortNumber(-std::numeric_limits<double>::infinity()), "-inf");
}

}  // namespace
}  // namespace madam
