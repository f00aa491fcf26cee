// Device lists (common/devices.h): what workers register and ranks take.
#include "common/devices.h"

#include <gtest/gtest.h>

namespace madam {
namespace {

using List = std::vector<std::string>;

TEST(DevicesTest, ListsParseToTheirEntries) {
  EXPECT_EQ(*ParseDeviceList("cpu"), List{"cpu"});
  EXPECT_EQ(*ParseDeviceList("cpu,cpu"), (List{"cpu", "cpu"}));
  EXPECT_EQ(*ParseDeviceList("cuda"), List{"cuda:0"});
  EXPECT_EQ(*ParseDeviceList("cuda:1,cuda:0,cuda:07"), (List{"cuda:1", "cuda:0", "cuda:7"}));
  EXPECT_EQ(DeviceListKind("cuda:0,cuda:1"), "cuda");
  EXPECT_EQ(DeviceListKind("cpu,cpu"), "cpu");
  EXPECT_EQ(DeviceListSize("cuda:0,cuda:1,cuda:2"), 3);
}

TEST(DevicesTest, BadListsAreRefusedNamingTheValue) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "empty"},
      {"cuda:0,", "empty entry"},
      {"cuda:0,cuda:0", "cuda:0 is named twice"},
      {"cuda:1,cuda:01", "cuda:1 is named twice"},
      {"cpu,cuda:0", "mixes CPU and CUDA"},
      {"tpu:0", "\"tpu:0\""},
      {"cuda:x", "\"cuda:x\""},
  };
  for (const auto& [text, want] : cases) {
    auto r = ParseDeviceList(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.status().message().find(want), std::string::npos) << text << ": " << r.status().message();
  }
  std::string many = "cpu";
  for (int i = 1; i < 65; ++i) many += ",cpu";
  auto r = ParseDeviceList(many);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("more than 64"), std::string::npos) << r.status().message();
}

TEST(DevicesTest, WorkerFlagsResolve) {
  EXPECT_EQ(*ResolveWorkerDevices("auto", 0, 0), List{"cpu"});
  EXPECT_EQ(*ResolveWorkerDevices("auto", 0, 2), List{"cuda:0"});
  EXPECT_EQ(*ResolveWorkerDevices("all", 0, 3), (List{"cuda:0", "cuda:1", "cuda:2"}));
  EXPECT_EQ(*ResolveWorkerDevices("all", 0, 0), List{"cpu"});
  EXPECT_EQ(*ResolveWorkerDevices("cpu", 3, 0), (List{"cpu", "cpu", "cpu"}));
  EXPECT_EQ(*ResolveWorkerDevices("cuda:2,cuda:3", 0, 0), (List{"cuda:2", "cuda:3"}));
  auto mixed = ResolveWorkerDevices("cuda:0", 2, 1);
  ASSERT_FALSE(mixed.ok());
  EXPECT_NE(mixed.status().message().find("--cpu-ranks"), std::string::npos);
  EXPECT_FALSE(ResolveWorkerDevices("cpu", 65, 0).ok());
}

}  // namespace
}  // namespace madam
