#include "cli/output.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "cli/client.h"

namespace madam::cli {
namespace {

namespace v1 = madam::v1;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

TEST(FormatNumberTest, PrintsShortestRoundTrippingDecimal) {
  EXPECT_EQ(FormatNumber(0.001), "0.001");
  EXPECT_EQ(FormatNumber(1e-4), "0.0001");
  EXPECT_EQ(FormatNumber(3), "3");
  EXPECT_EQ(FormatNumber(-2.5), "-2.5");
  EXPECT_EQ(FormatNumber(0.1 + 0.2), "0.30000000000000004");
  EXPECT_EQ(FormatNumber(std::pow(10.0, -3.5)), "0.00031622776601683794");
  EXPECT_EQ(FormatNumber(13.2), "13.2");
  for (double v : {0.001, 1e-7, 123456.789, std::pow(10.0, -3.5), 1.0 / 3}) {
    EXPECT_EQ(std::strtod(FormatNumber(v).c_str(), nullptr), v) << FormatNumber(v);
  }
}

TEST(FormatNumberTest, NonFiniteValuesAreWords) {
  EXPECT_EQ(FormatNumber(kNaN), "nan");
  EXPECT_EQ(FormatNumber(kInf), "inf");
  EXPECT_EQ(FormatNumber(-kInf), "-inf");
}

TEST(FormatCompactTest, KeepsFourSignificantDigits) {
  EXPECT_EQ(FormatCompact(0.20429828763008118), "0.2043");
  EXPECT_EQ(FormatCompact(13), "13");
  EXPECT_EQ(FormatCompact(kNaN), "nan");
}

TEST(JsonNumberTest, IntegersStayIntegersAndNonFiniteIsNull) {
  EXPECT_EQ(JsonNumber(3).dump(), "3");
  EXPECT_EQ(JsonNumber(0.01).dump(), "0.01");
  EXPECT_EQ(JsonNumber(1e-4).dump(), "0.0001");
  EXPECT_EQ(JsonNumber(kNaN).dump(), "null");
  EXPECT_EQ(JsonNumber(-kInf).dump(), "null");
}

TEST(ParamValueTest, NumbersAsNumbersAndTextAsStrings) {
  v1::ParamValue number, text;
  number.set_number(12);
  text.set_text("int_madam");
  EXPECT_EQ(ParamToJson(number).dump(), "12");
  EXPECT_EQ(ParamToJson(text).dump(), "\"int_madam\"");
  EXPECT_EQ(ParamToString(number), "12");
  EXPECT_EQ(ParamToString(text), "int_madam");
}

TEST(RunStateTest, ParsesLowerUpperAndEnumNames) {
  EXPECT_EQ(ParseRunState("failed"), v1::RUN_STATE_FAILED);
  EXPECT_EQ(ParseRunState("DIVERGED"), v1::RUN_STATE_DIVERGED);
  EXPECT_EQ(ParseRunState("RUN_STATE_CANCELLED"), v1::RUN_STATE_CANCELLED);
  EXPECT_EQ(ParseRunState("bogus"), std::nullopt);
  EXPECT_EQ(ParseRunState("unspecified"), std::nullopt);
  EXPECT_EQ(RunStateName(v1::RUN_STATE_SUCCEEDED), "succeeded");
}

TEST(CsvTest, QuotesOnlyFieldsThatNeedIt) {
  EXPECT_EQ(CsvField("plain"), "plain");
  EXPECT_EQ(CsvField("a,b"), "\"a,b\"");
  EXPECT_EQ(CsvField("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(CsvField("two\nlines"), "\"two\nlines\"");
  std::ostringstream out;
  WriteCsvRow(out, {"id", "x,y", ""});
  EXPECT_EQ(out.str(), "id,\"x,y\",\n");
}

TEST(TableTest, AlignsColumnsToTheWidestCell) {
  Table table({"ID", "STATE"});
  table.AddRow({"run-10", "ok"});
  table.AddRow({"r", "succeeded"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(),
            "ID      STATE\n"
            "run-10  ok\n"
            "r       succeeded\n");
}

// Section 9: a worker-sent string cannot drive the terminal.
TEST(TableTest, EscapesControlBytes) {
  Table table({"NAME", "ERROR"});
  table.AddRow({"w\x1b[2J", "a\rb\x7f"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(),
            "NAME      ERROR\n"
            "w\\x1b[2J  a\\x0db\\x7f\n");
  std::ostringstream kv;
  PrintKeyValues(kv, {{"error", "line1\nline2\x1b]0;x\x07"}});
  EXPECT_EQ(kv.str(), "error: line1\nline2\\x1b]0;x\\x07\n");
}

TEST(KeyValuesTest, AlignsValues) {
  std::ostringstream out;
  PrintKeyValues(out, {{"id", "sw-1"}, {"state", "running"}});
  EXPECT_EQ(out.str(), "id:    sw-1\nstate: running\n");
}

TEST(AbbreviateTest, CutsToOneLineAndWidth) {
  EXPECT_EQ(Abbreviate("short", 10), "short");
  EXPECT_EQ(Abbreviate("0123456789abc", 10), "0123456...");
  EXPECT_EQ(Abbreviate("first\nsecond", 40), "first...");
}

TEST(ProgressBarTest, FillsInProportionAndClamps) {
  EXPECT_EQ(ProgressBar(0.5, 10), "[#####-----]");
  EXPECT_EQ(ProgressBar(0, 4), "[----]");
  EXPECT_EQ(ProgressBar(1, 4), "[####]");
  EXPECT_EQ(ProgressBar(7, 4), "[####]");
  EXPECT_EQ(ProgressBar(kNaN, 4), "[----]");
}

TEST(TimeTest, FormatsUtcAndAges) {
  EXPECT_EQ(FormatTimeMs(0), "-");
  EXPECT_EQ(FormatTimeMs(1764336717000), "2025-11-28 13:31:57Z");
  EXPECT_EQ(FormatAge(100000, 95000), "5s ago");
  EXPECT_EQ(FormatAge(10'000'000, 10'000'000 - 300'000), "5m ago");
  EXPECT_EQ(FormatAge(1000, 0), "never");
}

v1::SweepProgress MakeProgress(int64_t done, int64_t running) {
  v1::SweepProgress p;
  v1::Sweep* s = p.mutable_sweep();
  s->set_id("sw-1");
  s->set_name("grid");
  s->set_state("running");
  s->mutable_counts()->set_succeeded(done);
  s->mutable_counts()->set_running(running);
  s->mutable_counts()->set_pending(10 - done - running);
  for (int i = 0; i < running; ++i) {
    v1::RunProgress* r = p.add_running();
    r->set_run_id("sw-1-r" + std::to_string(i));
    (*r->mutable_labels())["optimizer"] = "madam";
    (*r->mutable_labels())["lr"] = "0.01";
    r->set_worker("w1");
    r->set_step(100);
    r->set_fraction(0.5);
    (*r->mutable_latest())["train/loss"] = 0.25;
  }
  return p;
}

TEST(RenderProgressTest, SummaryHasBarCountsAndOneLinePerRunningRun) {
  ProgressFrame frame = RenderProgress(MakeProgress(4, 2));
  EXPECT_NE(frame.summary.find("sw-1"), std::string::npos);
  EXPECT_NE(frame.summary.find("4/10"), std::string::npos);
  EXPECT_NE(frame.summary.find("running 2"), std::string::npos);
  EXPECT_NE(frame.summary.find("failed 0"), std::string::npos);
  ASSERT_EQ(frame.runs.size(), 2u);
  EXPECT_NE(frame.runs[0].find("sw-1-r0"), std::string::npos);
  EXPECT_NE(frame.runs[0].find("lr=0.01 optimizer=madam"), std::string::npos);
  EXPECT_NE(frame.runs[0].find("w1"), std::string::npos);
  EXPECT_NE(frame.runs[0].find("[##########----------] 50%"), std::string::npos);
  EXPECT_NE(frame.runs[0].find("train/loss 0.25"), std::string::npos);
}

TEST(ProgressPrinterTest, PlainOutputIsOneSummaryLinePerUpdate) {
  std::ostringstream out;
  ProgressPrinter printer(out, /*tty=*/false);
  printer.Draw(RenderProgress(MakeProgress(1, 2)));
  printer.Draw(RenderProgress(MakeProgress(3, 1)));
  std::string text = out.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
}

TEST(ProgressPrinterTest, TerminalRedrawsInPlace) {
  std::ostringstream out;
  ProgressPrinter printer(out, /*tty=*/true);
  printer.Draw(RenderProgress(MakeProgress(1, 2)));
  std::string first = out.str();
  EXPECT_EQ(first.find("\x1b[3A"), std::string::npos);  // nothing to move over yet
  printer.Draw(RenderProgress(MakeProgress(3, 1)));
  std::string second = out.str().substr(first.size());
  EXPECT_EQ(second.rfind("\x1b[3A", 0), 0u) << "moves up over the 3 lines of the last frame";
  EXPECT_NE(second.find("\r\x1b[2K"), std::string::npos);
  EXPECT_NE(second.find("\x1b[J"), std::string::npos);
  printer.Detach();
  printer.Draw(RenderProgress(MakeProgress(4, 0)));
  std::string third = out.str().substr(first.size() + second.size());
  EXPECT_EQ(third.rfind("\r\x1b[2K", 0), 0u) << "no cursor-up after Detach: " << third;
}

TEST(ProgressPrinterTest, TerminalLinesAreCutToTheWidthSoNoneWraps) {
  std::ostringstream out;
  ProgressPrinter printer(out, /*tty=*/true, /*columns=*/40);
  printer.Draw(RenderProgress(MakeProgress(1, 1)));
  std::istringstream lines(out.str());
  std::string line;
  while (std::getline(lines, line)) {
    std::string visible = line.substr(line.rfind("\x1b[2K") + 4);
    EXPECT_LE(visible.size(), 39u) << visible;
  }
}

TEST(ProgressJsonTest, CarriesSweepAndRunningRuns) {
  Json j = ProgressToJson(MakeProgress(4, 1));
  EXPECT_EQ(j["sweep"]["id"], "sw-1");
  EXPECT_EQ(j["sweep"]["counts"]["succeeded"], 4);
  ASSERT_EQ(j["running"].size(), 1u);
  EXPECT_EQ(j["running"][0]["run"], "sw-1-r0");
  EXPECT_EQ(j["running"][0]["fraction"], 0.5);
  EXPECT_EQ(j["running"][0]["latest"]["train/loss"], 0.25);
}

TEST(DescribeRpcErrorTest, UnavailableNamesAddressAndRemedy) {
  std::string m = DescribeRpcError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "connection refused"),
                                   "10.0.0.5:7070");
  EXPECT_EQ(m, "cannot reach the coordinator at 10.0.0.5:7070 (UNAVAILABLE: connection refused): "
               "is madamd running? set --coordinator or MADAM_COORDINATOR");
}

TEST(DescribeRpcErrorTest, RequestErrorsPassTheServerMessageThrough) {
  EXPECT_EQ(DescribeRpcError(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                          "lr.yaml:7:9: lr must be positive, got -1"),
                             "a:1"),
            "lr.yaml:7:9: lr must be positive, got -1");
  EXPECT_EQ(DescribeRpcError(grpc::Status(grpc::StatusCode::NOT_FOUND, "no sweep \"sw-x\""), "a:1"),
            "no sweep \"sw-x\"");
}

TEST(DescribeRpcErrorTest, AuthErrorsSayWhatToSet) {
  EXPECT_NE(DescribeRpcError(grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing token"), "a:1")
                .find("MADAM_TOKEN"),
            std::string::npos);
  EXPECT_NE(DescribeRpcError(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "reader"), "a:1")
                .find("admin"),
            std::string::npos);
  EXPECT_EQ(DescribeRpcError(grpc::Status(grpc::StatusCode::INTERNAL, "boom"), "a:1"), "INTERNAL: boom");
}

}  // namespace
}  // namespace madam::cli
