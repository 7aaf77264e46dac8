// A shard truncated while it is being converted (issue 10, item 9): the input used to be mmapped,
// so reading the vanished pages killed the tool with SIGBUS and left a temporary. Inputs are
// read with pread now: the convert fails with an IO error naming the file and the tensor.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "convert/detail/convert_internal.h"
#include "hct/convert.h"
#include "hct/safetensors.h"

namespace hct {
namespace {

namespace fs = std::filesystem;

TEST(ConvertTruncation, ShardShrinkingMidConvertIsAnIoErrorNamingTheFile) {
  std::string tmpl = (fs::temp_directory_path() / "hct_trunc_test.XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  const fs::path root = tmpl;
  const fs::path in = root / "model.safetensors";
  // Two tensors of 1 MiB; the second one's bytes are cut off before it is read.
  std::vector<std::byte> a(1 << 20, std::byte{1}), b(1 << 20, std::byte{2});
  const std::vector<TensorData> ts = {{"a", DType::kU8, {1 << 20}, a},
                                      {"b", DType::kU8, {1 << 20}, b}};
  ASSERT_TRUE(WriteSafetensors(in.string(), ts).ok());
  ConvertOptions o;
  o.threads = 1;
  o.policy.lossless = true;
  detail::ConvertHooks hooks;
  hooks.before_tensor = [&](std::string_view name) {
    if (name == "b") fs::resize_file(in, fs::file_size(in) - (1 << 19));
    return Status::OK();
  };
  Result<ConvertReport> r = detail::ConvertWithHooks(in.string(), (root / "out").string(), o, hooks);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kIOError) << r.status().ToString();
  EXPECT_NE(r.status().message().find(in.string()), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("tensor 'b'"), std::string::npos) << r.status().ToString();
  EXPECT_FALSE(fs::exists(root / "out"));
  for (const auto& e : fs::recursive_directory_iterator(root))
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  fs::remove_all(root);
}

}  // namespace
}  // namespace hct
