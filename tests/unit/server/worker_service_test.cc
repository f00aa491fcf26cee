// The upload advice in ReportMetrics answers (server/worker_service.h,
// ARCHITECTURE.md section 9): the fleet's share of the call budget, raised
// as the write queue fills, never under the worker's 250 ms floor nor over
// its 5 s ceiling.
#include "server/worker_service.h"

#include <gtest/gtest.h>

namespace madam::server {
namespace {

TEST(AdvisedUploadIntervalTest, FleetShareOfTheCallBudget) {
  // 2,000 runs sharing 2,000 calls/s: one call a second each.
  EXPECT_EQ(AdvisedUploadIntervalMs(2000, 2000, 0), 1000);
  EXPECT_EQ(AdvisedUploadIntervalMs(4000, 2000, 0), 2000);
  // A small fleet fits the worker's own floor: no advice.
  EXPECT_EQ(AdvisedUploadIntervalMs(100, 2000, 0), 0);
  EXPECT_EQ(AdvisedUploadIntervalMs(500, 2000, 0), 0);  // exactly the floor
  // No budget, no runs: no fleet term.
  EXPECT_EQ(AdvisedUploadIntervalMs(5000, 0, 0), 0);
  EXPECT_EQ(AdvisedUploadIntervalMs(0, 2000, 0), 0);
  // Never above the ceiling.
  EXPECT_EQ(AdvisedUploadIntervalMs(1000000, 2000, 0), 5000);
}

TEST(AdvisedUploadIntervalTest, QueueLoadDoublesPerFifthPastTheFirstTenth) {
  EXPECT_EQ(AdvisedUploadIntervalMs(1, 2000, 0.1), 0);    // under a tenth: nothing
  EXPECT_EQ(AdvisedUploadIntervalMs(1, 2000, 0.3), 500);  // 250 x 2
  EXPECT_EQ(AdvisedUploadIntervalMs(1, 2000, 0.5), 1000);
  EXPECT_EQ(AdvisedUploadIntervalMs(1, 2000, 0.9), 4000);
  EXPECT_EQ(AdvisedUploadIntervalMs(1, 2000, 1.0), 5000);  // capped
  // The larger term wins.
  EXPECT_EQ(AdvisedUploadIntervalMs(6000, 2000, 0.3), 3000);
  EXPECT_EQ(AdvisedUploadIntervalMs(2000, 2000, 0.5), 1000);
  EXPECT_EQ(AdvisedUploadIntervalMs(2000, 2000, 0.7), 2000);
}

}  // namespace
}  // namespace madam::server
